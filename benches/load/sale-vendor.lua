-- wrk: what the mapping sends MAXMA for one sale, set-purchase then confirm-ticket with the
-- ticket set-purchase answered. Run with as many threads as connections (-t N -c N): each
-- thread then has one request in flight and the answer it reads is its own.
-- SET_FILE / CONFIRM_FILE: the vendor bodies with __TXID__ (and __TICKET__) to fill in.
local threads = 0
function setup(thread)
  thread:set("tid", threads)
  threads = threads + 1
end

local function read(name)
  local f = assert(io.open(os.getenv(name), "rb"))
  local s = f:read("*a")
  f:close()
  return s
end
local set_body, confirm_body = read("SET_FILE"), read("CONFIRM_FILE")
local prefix = os.getenv("RUN_ID") or "run"
local headers = {["Content-Type"] = "application/json",
                 [os.getenv("AUTH_HEADER")] = os.getenv("AUTH_VALUE")}
local n, ticket = 0, nil

function request()
  local txid = "ms-retaildemand-" .. prefix .. "-" .. tostring(tid) .. "-" .. n
  if ticket then
    local body = confirm_body:gsub("__TXID__", txid):gsub("__TICKET__", ticket)
    return wrk.format("POST", "/confirm-ticket", headers, body)
  end
  n = n + 1
  txid = "ms-retaildemand-" .. prefix .. "-" .. tostring(tid) .. "-" .. n
  return wrk.format("POST", "/set-purchase", headers, (set_body:gsub("__TXID__", txid)))
end

function response(status, hdrs, body)
  if ticket then
    ticket = nil
  else
    ticket = body:match('"ticket"%s*:%s*"(%w+)"')
  end
end

function done(summary, latency, requests)
  io.write(string.format("WRK_JSON {\"requests\": %d, \"duration_us\": %d, \"errors\": %d, \"non2xx\": %d}\n",
    summary.requests, summary.duration,
    summary.errors.connect + summary.errors.read + summary.errors.write + summary.errors.timeout,
    summary.errors.status))
end
