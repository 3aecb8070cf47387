-- wrk: LoyaltyAPI sales (POST /retaildemand), each with its own id (so each is a new MAXMA
-- purchase): BODY_FILE with __ID__ replaced by RUN_ID-<thread>-<n>.
local threads = 0
function setup(thread)
  thread:set("tid", threads)
  threads = threads + 1
end

local f = assert(io.open(os.getenv("BODY_FILE"), "rb"))
local template = f:read("*a")
f:close()
local prefix = os.getenv("RUN_ID") or "run"
local headers = {["Content-Type"] = "application/json",
                 [os.getenv("AUTH_HEADER")] = os.getenv("AUTH_VALUE")}
local n = 0

function request()
  n = n + 1
  local body = template:gsub("__ID__", prefix .. "-" .. tostring(tid) .. "-" .. n)
  return wrk.format("POST", "/retaildemand", headers, body)
end

function done(summary, latency, requests)
  io.write(string.format("WRK_JSON {\"requests\": %d, \"duration_us\": %d, \"errors\": %d, \"non2xx\": %d}\n",
    summary.requests, summary.duration,
    summary.errors.connect + summary.errors.read + summary.errors.write + summary.errors.timeout,
    summary.errors.status))
end
