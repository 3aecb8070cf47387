#!/usr/bin/env bash
# Load-test harness (issue #7): the same MoySklad recalc and sale against
#   (a) the MAXMA sandbox directly (the vendor-shaped requests the mapping produces),
#   (b) nginx proxy_pass to the sandbox (no transform),
#   (c) nginx + njs doing recalc's mapping (maxma.js),
#   (d) loyalty-bridge (release build) in front of the sandbox,
# then a slow vendor check: 2,000 concurrent recalcs through the bridge to a sandbox that
# answers in 200 ms. Writes the table to benches/results.md. See benches/README.md.
#
# Run as root on Debian bookworm from a checkout: bash benches/load/run.sh
# Knobs (environment): LB_BENCH_PORT_BASE (19180; uses the next 6 ports), LB_BENCH_SECONDS
# (10, each saturation run), LB_BENCH_SAT_ROUNDS (3: the recalc saturation runs of all setups,
# alternated, this many times), LB_BENCH_RATE_SECONDS (10, each fixed-rate run), LB_BENCH_RATE_ROUNDS
# (3: the fixed-rate runs of all setups, alternated, this many times), LB_BENCH_SANDBOX_BIN (the
# emulator's binary; default the bridge's), LB_BENCH_OUT
# (benches/results.md), LB_BENCH_BUILD (pgo: the deployment build, scripts/build-release.sh, PGO + BOLT;
# release: plain `cargo build --release`), LB_BENCH_BIN (a loyalty-bridge binary to use instead
# of building one). Honours CARGO_TARGET_DIR. Not run by CI.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
out=${LB_BENCH_OUT:-$root/benches/results.md}
secs=${LB_BENCH_SECONDS:-10}
sat_rounds=${LB_BENCH_SAT_ROUNDS:-3}
rate_secs=${LB_BENCH_RATE_SECONDS:-10}
rate_rounds=${LB_BENCH_RATE_ROUNDS:-3}
base=${LB_BENCH_PORT_BASE:-19180}
p_sandbox=$((base + 1)) p_proxy=$((base + 2)) p_njs=$((base + 3)) p_bridge=$((base + 4))
p_slow_sandbox=$((base + 5)) p_slow_bridge=$((base + 6))
key=bench-processing-key
token=bench-token-0123456789abcdef0123456789
run_id=$(date +%s)

log() { printf '== %s\n' "$*" >&2; }
die() { printf 'run.sh: %s\n' "$*" >&2; exit 1; }

[ "$(id -u)" = 0 ] || die "run as root (it installs packages with apt-get)"

# --- tools ------------------------------------------------------------------------------------
need=()
# bolt-19: LLVM's post-link optimiser, for the deployment build (scripts/build-release.sh).
for pkg in nginx libnginx-mod-http-js wrk python3 curl libssl-dev pkg-config bolt-19; do
  dpkg -s "$pkg" >/dev/null 2>&1 || need+=("$pkg")
done
if [ ${#need[@]} -gt 0 ]; then
  log "apt-get install ${need[*]}"
  apt-get update -qq
  # Debian starts nginx on port 80 after installing it; this harness runs its own instances.
  DEBIAN_FRONTEND=noninteractive RUNLEVEL=1 apt-get install -y -qq "${need[@]}" >/dev/null
fi
export PATH="$HOME/.cargo/bin:$PATH"
if ! command -v oha >/dev/null; then
  # oha needs some TLS backend to build; Debian's OpenSSL is the lighter one to compile.
  log "cargo install oha (constant-rate load generator)"
  cargo install oha --locked --no-default-features --features native-tls
fi

build=${LB_BENCH_BUILD:-pgo}
if [ -n "${LB_BENCH_BIN:-}" ]; then
  bin=$LB_BENCH_BIN   # a binary built already (e.g. another profile, to compare)
  build="given (LB_BENCH_BIN)"
elif [ "$build" = pgo ] || [ "$build" = release ]; then
  fallback=""
  if [ "$build" = pgo ]; then
    # What docs/operations.md's "Deployment build" ships: release + profile-guided optimisation (+ BOLT).
    log "scripts/build-release.sh (release profile + PGO + BOLT)"
    if bash "$root/scripts/build-release.sh"; then
      bin=${CARGO_TARGET_DIR:-$root/target}/release-pgo/loyalty-bridge
      build="$(cat "$(dirname "$bin")/BUILD") (scripts/build-release.sh)"
    else
      # E.g. no llvm-tools for this toolchain offline: measure what can be built, and say so.
      log "scripts/build-release.sh failed (above): measuring the plain release build instead"
      fallback=", because scripts/build-release.sh failed"
      build=release
    fi
  fi
  if [ "$build" = release ]; then
    log "cargo build --release"
    (cd "$root" && cargo build --release --quiet)
    bin=${CARGO_TARGET_DIR:-$root/target}/release/loyalty-bridge
    build="release (cargo build --release$fallback)"
  fi
else
  die "LB_BENCH_BUILD is pgo or release, not $build"
fi
[ -x "$bin" ] || die "no binary at $bin"
# The vendor emulator's binary: the bridge's own unless given (an A/B of two bridges keeps the
# vendor the same: benches/ab/run.sh).
sandbox_bin=${LB_BENCH_SANDBOX_BIN:-$bin}
[ -x "$sandbox_bin" ] || die "no binary at $sandbox_bin"

# --- processes --------------------------------------------------------------------------------
work=$(mktemp -d /tmp/lb-bench.XXXXXX)
pids=()
cleanup() {
  local status=$? pid f
  if [ "$status" != 0 ]; then
    for f in "$work"/*.log; do
      [ -s "$f" ] && { echo "--- $f" >&2; tail -n 5 "$f" >&2; }
    done
  fi
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
  rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM
# 2,000 client connections plus as many to the vendor: raise the soft limit to the hard one.
ulimit -n "$(ulimit -Hn)"
[ "$(ulimit -n)" = unlimited ] || [ "$(ulimit -n)" -ge 8192 ] || die "open files limit $(ulimit -n) < 8192"

wait_port() {
  local port=$1 i
  for i in $(seq 1 100); do
    if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then return 0; fi
    sleep 0.1
  done
  die "nothing listens on port $port (logs in $work)"
}

fill() { # template → file, @VARS@ replaced
  sed -e "s|@WORK@|$work|g" -e "s|@HERE@|$here|g" -e "s|@ROOT@|$root|g" -e "s|@KEY@|$key|g" \
      -e "s|@TOKEN@|$token|g" -e "s|@PORT@|$2|g" -e "s|@SANDBOX_PORT@|$3|g" "$1" > "$4"
}

start() { # name, command…: started in the background, its pid recorded
  local name=$1; shift
  "$@" > "$work/$name.log" 2>&1 &
  pids+=($!)
  eval "pid_$name=$!"
}

log "starting the sandbox, nginx (proxy, njs) and the bridge in $work"
start sandbox "$sandbox_bin" sandbox maxma --listen "127.0.0.1:$p_sandbox" --key "$key"
start slow_sandbox "$sandbox_bin" sandbox maxma --listen "127.0.0.1:$p_slow_sandbox" --key "$key" --delay-ms 200
fill "$here/nginx-proxy.conf.in" "$p_proxy" "$p_sandbox" "$work/nginx-proxy.conf"
fill "$here/nginx-njs.conf.in" "$p_njs" "$p_sandbox" "$work/nginx-njs.conf"
mkdir -p "$work"/nginx-{proxy,njs}-{body,proxy}
start proxy nginx -c "$work/nginx-proxy.conf" -p "$work"
start njs nginx -c "$work/nginx-njs.conf" -p "$work"
fill "$here/bridge.toml.in" "$p_bridge" "$p_sandbox" "$work/bridge.toml"
fill "$here/bridge.toml.in" "$p_slow_bridge" "$p_slow_sandbox" "$work/bridge-slow.toml"
export LB_BENCH_TOKEN=$token LB_BENCH_KEY=$key
start bridge "$bin" --config "$work/bridge.toml" serve
start slow_bridge "$bin" --config "$work/bridge-slow.toml" serve
for port in $p_sandbox $p_slow_sandbox $p_proxy $p_njs $p_bridge $p_slow_bridge; do wait_port "$port"; done

# --- the requests -----------------------------------------------------------------------------
# The vendor-shaped bodies come from the mapping itself (`loyalty-bridge map`), so (a) and (b)
# get exactly what the bridge would send.
"$bin" map --op retaildemand.recalc --mapping "$root/mappings/maxma.toml" < "$here/recalc.json" > "$work/recalc.map"
sed 's/__ID__/TEMPLATE/' "$here/sale.json" \
  | "$bin" map --op retaildemand.create --mapping "$root/mappings/maxma.toml" > "$work/sale.map"
python3 "$here/harness.py" vendor-bodies "$work"

post() { # url, auth header, body file → answer on stdout (fails on HTTP ≥ 400)
  curl -sS --fail-with-body -X POST "$1" -H "Content-Type: application/json" -H "$2" --data-binary "@$3"
}
vendor_auth="X-Processing-Key: $key"
bridge_auth="Lognex-Discount-API-Auth-Token: $token"

log "checking that every setup answers the benchmark cart, and that njs maps like the bridge"
post "http://127.0.0.1:$p_sandbox/v2/calculate-purchase" "$vendor_auth" "$work/vendor-calc.json" > "$work/a.json"
post "http://127.0.0.1:$p_proxy/v2/calculate-purchase" "$vendor_auth" "$work/vendor-calc.json" > "$work/b.json"
post "http://127.0.0.1:$p_njs/retaildemand/recalc" "$bridge_auth" "$here/recalc.json" > "$work/c.json"
post "http://127.0.0.1:$p_bridge/retaildemand/recalc" "$bridge_auth" "$here/recalc.json" > "$work/d.json"
post "http://127.0.0.1:$p_njs/__vendor_request" "$bridge_auth" "$here/recalc.json" > "$work/c-vendor.json"
sed "s/__ID__/check-$run_id/" "$here/sale.json" > "$work/sale-check.json"
post "http://127.0.0.1:$p_bridge/retaildemand" "$bridge_auth" "$work/sale-check.json" > /dev/null
python3 "$here/harness.py" check "$work"

# --- measuring --------------------------------------------------------------------------------
proc_pids() { # a pid and its children (nginx: master and workers)
  echo "$1"; pgrep -P "$1" || true
}
cpu_ticks() {
  local t=0 pid
  for pid in $(proc_pids "$1"); do
    t=$((t + $(sed 's/.*) //' "/proc/$pid/stat" | awk '{print $12 + $13}')))
  done
  echo "$t"
}
hwm_kib() {
  local k=0 pid
  for pid in $(proc_pids "$1"); do
    k=$((k + $(awk '/^VmHWM/ {print $2}' "/proc/$pid/status")))
  done
  echo "$k"
}

saturate() { # setup, op, round, server pid, wrk args… → appends a JSON line to results.jsonl
  local setup=$1 op=$2 round=$3 pid=$4; shift 4
  local before after
  before=$(cpu_ticks "$pid")
  wrk -d "${secs}s" --latency "$@" > "$work/wrk-$setup-$op-$round.txt" 2>&1
  after=$(cpu_ticks "$pid")
  local summary
  summary=$(sed -n 's/^WRK_JSON //p' "$work/wrk-$setup-$op-$round.txt")
  [ -n "$summary" ] || { cat "$work/wrk-$setup-$op-$round.txt" >&2; die "wrk gave no summary"; }
  echo "{\"kind\": \"saturate\", \"setup\": \"$setup\", \"op\": \"$op\", \"round\": $round, \"cpu_ticks\": $((after - before)), \"clk_tck\": $(getconf CLK_TCK), \"wrk\": $summary}" >> "$work/results.jsonl"
  log "$setup $op: $summary"
}

fixed_rate() { # setup, url, auth, body file, round → oha JSON at 1,000 requests/s
  local setup=$1 round=$5
  oha --no-tui -q 1000 -z "${rate_secs}s" -c 50 --latency-correction -m POST \
      -H "Content-Type: application/json" -H "$3" -D "$4" --output-format json "$2" > "$work/oha-$setup-$round.json"
  echo "{\"kind\": \"rate\", \"setup\": \"$setup\", \"round\": $round, \"oha\": \"oha-$setup-$round.json\"}" >> "$work/results.jsonl"
  log "$setup recalc at 1000/s (round $round) done"
}

export AUTH_HEADER AUTH_VALUE BODY_FILE RUN_ID=$run_id SET_FILE CONFIRM_FILE
sat_conns=64
sale_conns=16

# Rounds, each running every setup in turn: on the 2-core benchmark machine the same setup's
# throughput swings by ±20 % from minute to minute, more than the goal's margin, so (d) is
# compared with the (b) run right before it, round by round. (c), the heaviest, runs last.
log "saturation, recalc (${secs}s each, $sat_rounds rounds)"
for round in $(seq 1 "$sat_rounds"); do
  AUTH_HEADER=X-Processing-Key AUTH_VALUE=$key BODY_FILE=$work/vendor-calc.json
  saturate a recalc "$round" "$pid_sandbox" -t2 -c$sat_conns -s "$here/post.lua" "http://127.0.0.1:$p_sandbox/v2/calculate-purchase"
  saturate b recalc "$round" "$pid_proxy" -t2 -c$sat_conns -s "$here/post.lua" "http://127.0.0.1:$p_proxy/v2/calculate-purchase"
  AUTH_HEADER=Lognex-Discount-API-Auth-Token AUTH_VALUE=$token BODY_FILE=$here/recalc.json
  saturate d recalc "$round" "$pid_bridge" -t2 -c$sat_conns -s "$here/post.lua" "http://127.0.0.1:$p_bridge/retaildemand/recalc"
  saturate c recalc "$round" "$pid_njs" -t2 -c$sat_conns -s "$here/post.lua" "http://127.0.0.1:$p_njs/retaildemand/recalc"
done

# Rounds, each running every setup in turn: latency at a fixed rate drifts with the machine
# over minutes, and the report compares (d) with (a) round by round.
log "fixed rate, recalc at 1000/s (${rate_secs}s each, $rate_rounds rounds)"
for round in $(seq 1 "$rate_rounds"); do
  fixed_rate a "http://127.0.0.1:$p_sandbox/v2/calculate-purchase" "$vendor_auth" "$work/vendor-calc.json" "$round"
  fixed_rate b "http://127.0.0.1:$p_proxy/v2/calculate-purchase" "$vendor_auth" "$work/vendor-calc.json" "$round"
  fixed_rate c "http://127.0.0.1:$p_njs/retaildemand/recalc" "$bridge_auth" "$here/recalc.json" "$round"
  fixed_rate d "http://127.0.0.1:$p_bridge/retaildemand/recalc" "$bridge_auth" "$here/recalc.json" "$round"
done

log "saturation, sale (${secs}s each; one request at a time per connection)"
AUTH_HEADER=X-Processing-Key AUTH_VALUE=$key SET_FILE=$work/vendor-set.json CONFIRM_FILE=$work/vendor-confirm.json
RUN_ID=$run_id-a saturate a sale 1 "$pid_sandbox" -t$sale_conns -c$sale_conns -s "$here/sale-vendor.lua" "http://127.0.0.1:$p_sandbox"
RUN_ID=$run_id-b saturate b sale 1 "$pid_proxy" -t$sale_conns -c$sale_conns -s "$here/sale-vendor.lua" "http://127.0.0.1:$p_proxy"
AUTH_HEADER=Lognex-Discount-API-Auth-Token AUTH_VALUE=$token BODY_FILE=$here/sale.json
RUN_ID=$run_id-d saturate d sale 1 "$pid_bridge" -t$sale_conns -c$sale_conns -s "$here/sale-bridge.lua" "http://127.0.0.1:$p_bridge"

log "2,000 concurrent recalcs through the bridge, vendor answering in 200 ms"
oha --no-tui -n 2000 -c 2000 -t 30s -m POST -H "Content-Type: application/json" -H "$bridge_auth" \
    -D "$here/recalc.json" --output-format json "http://127.0.0.1:$p_slow_bridge/retaildemand/recalc" > "$work/oha-slow.json"
echo "{\"kind\": \"slow\", \"oha\": \"oha-slow.json\", \"hwm_kib\": $(hwm_kib "$pid_slow_bridge")}" >> "$work/results.jsonl"

for s in a:sandbox b:proxy c:njs d:bridge; do
  eval "pid=\$pid_${s#*:}"
  echo "{\"kind\": \"rss\", \"setup\": \"${s%%:*}\", \"hwm_kib\": $(hwm_kib "$pid")}" >> "$work/results.jsonl"
done

python3 "$here/harness.py" report "$work" "$out" "$bin" "$build"
log "wrote $out"
cat "$out"
