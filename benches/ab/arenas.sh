#!/usr/bin/env bash
# Does one jemalloc arena for all threads (`narenas:1`, src/main.rs) still pay? Alternates the
# built-in setting with jemalloc's default (4 arenas per CPU, set explicitly through
# `_RJEM_MALLOC_CONF`, which overrides the built-in one) on the load harness' burst: a fresh
# bridge in front of a MAXMA emulator answering in 200 ms, 2,000 recalcs at once (oha), then the
# bridge's peak RSS (VmHWM) and its CPU time. Prints one line per run and the medians.
#
# Usage: bash benches/ab/arenas.sh <loyalty-bridge binary> [rounds, default 3]. Needs oha.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
bin=$(realpath "$1")
rounds=${2:-3}
work=$(mktemp -d)
port_sandbox=19291 port_bridge=19292
export LB_BENCH_KEY=bench-processing-key LB_BENCH_TOKEN=bench-token-0123456789abcdef0123456789
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT
ulimit -n "$(ulimit -Hn)"
wait_port() { for _ in $(seq 1 100); do (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0; sleep 0.1; done; echo "port $1 never opened" >&2; exit 1; }

"$bin" sandbox maxma --listen "127.0.0.1:$port_sandbox" --key "$LB_BENCH_KEY" --delay-ms 200 > "$work/sandbox.log" 2>&1 &
pids+=($!)
wait_port $port_sandbox

burst() { # label, malloc conf ("" = the built-in one) → "label hwm_mib cpu_ms answered"
  local label=$1 conf=$2 store="$work/bridge-$RANDOM.sqlite3"
  sed -e "s|@WORK@|$work|g" -e "s|@ROOT@|$root|g" -e "s|@PORT@|$port_bridge|g" \
      -e "s|@SANDBOX_PORT@|$port_sandbox|g" "$root/benches/load/bridge.toml.in" > "$work/bridge.toml"
  if [ -n "$conf" ]; then
    _RJEM_MALLOC_CONF=$conf "$bin" --config "$work/bridge.toml" serve > "$work/bridge.log" 2>&1 &
  else
    "$bin" --config "$work/bridge.toml" serve > "$work/bridge.log" 2>&1 &
  fi
  local pid=$!
  wait_port $port_bridge
  oha --no-tui -n 2000 -c 2000 -t 30s -m POST -H "Content-Type: application/json" \
      -H "Lognex-Discount-API-Auth-Token: $LB_BENCH_TOKEN" -D "$root/benches/load/recalc.json" \
      --output-format json "http://127.0.0.1:$port_bridge/retaildemand/recalc" > "$work/oha.json"
  local hwm ticks
  hwm=$(awk '/^VmHWM/ {print $2}' "/proc/$pid/status")
  ticks=$(awk '{print $14 + $15}' "/proc/$pid/stat")
  kill "$pid"; wait "$pid" 2>/dev/null || true
  rm -f "$work"/bridge*.sqlite3*
  python3 - "$label" "$hwm" "$ticks" "$(getconf CLK_TCK)" "$work/oha.json" <<'PY'
import json, sys
label, hwm, ticks, hz, oha = sys.argv[1:]
codes = json.load(open(oha)).get("statusCodeDistribution", {})
print(f"{label} {int(hwm) / 1024:.1f} {int(ticks) * 1000 // int(hz)} {codes.get('200', 0)}")
PY
}

echo "variant peak_rss_mib cpu_ms answered_200"
for round in $(seq 1 "$rounds"); do
  if [ $((round % 2)) = 1 ]; then order="one default"; else order="default one"; fi
  for v in $order; do
    case $v in
      one) burst "narenas:1" "" ;;
      default) burst "default" "narenas:$(( $(nproc) * 4 ))" ;;
    esac
  done
done | tee "$work/lines.txt"
python3 - "$work/lines.txt" <<'PY'
import statistics, sys
rows = [l.split() for l in open(sys.argv[1]) if l.strip() and not l.startswith("variant")]
for label in sorted({r[0] for r in rows}):
    mine = [r for r in rows if r[0] == label]
    print(f"median {label}: peak RSS {statistics.median(float(r[1]) for r in mine):.1f} MiB, "
          f"CPU {statistics.median(int(r[2]) for r in mine)} ms, answered {[r[3] for r in mine]}")
PY
