#!/usr/bin/env bash
# Several instances as one client of a rate-limited vendor (issue #26), under load: the files of
# deploy/several-instances/ as shipped (three bridges on one PostgreSQL, nginx in front), the
# MAXMA sandbox refusing calls above its per-second limit, 300 requests a second offered through
# nginx (one in ten a sale, the rest recalcs), one instance SIGKILLed halfway. Then every sale
# that got no 201 is repeated, as MoySklad would, until it does, and the vendor's balance says
# whether each took effect once. Writes its section of benches/results.md (between the
# `<!-- instances -->` markers). See benches/README.md.
#
# Run as root on Debian bookworm from a checkout: bash benches/load/instances.sh
# Knobs (environment): LB_BENCH_PORT_BASE (19280; uses the next 6 ports), LB_BENCH_SECONDS (20,
# the offered load's length), LB_BENCH_OFFERED (300 requests a second), LB_BENCH_BIN (a
# loyalty-bridge binary; default: `cargo build --release`), LB_BENCH_OUT (benches/results.md).
# Honours CARGO_TARGET_DIR. Not run by CI (tests/it/instances.rs checks the same, shorter).
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
example=$root/deploy/several-instances
out=${LB_BENCH_OUT:-$root/benches/results.md}
secs=${LB_BENCH_SECONDS:-20}
offered=${LB_BENCH_OFFERED:-300}
base=${LB_BENCH_PORT_BASE:-19280}
p_pg=$((base + 1)) p_sandbox=$((base + 2)) p_lb=$((base + 3))
p_bridges=($((base + 4)) $((base + 5)) $((base + 6)))
key=bench-processing-key
token=bench-token-0123456789abcdef0123456789

log() { printf '== %s\n' "$*" >&2; }
die() { printf 'instances.sh: %s\n' "$*" >&2; exit 1; }

[ "$(id -u)" = 0 ] || die "run as root (it installs packages with apt-get and runs PostgreSQL as postgres)"

# --- tools ------------------------------------------------------------------------------------
find_pg_bin() { # Debian's server binaries, newest first
  local d
  for d in $(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V -r); do
    if [ -x "$d/initdb" ] && [ -x "$d/pg_ctl" ] && [ -x "$d/postgres" ]; then echo "$d"; return; fi
  done
}
need=()
for pkg in nginx python3 curl; do dpkg -s "$pkg" >/dev/null 2>&1 || need+=("$pkg"); done
[ -n "$(find_pg_bin)" ] || need+=(postgresql)
if [ ${#need[@]} -gt 0 ]; then
  log "apt-get install ${need[*]}"
  apt-get update -qq
  # Debian starts nginx and PostgreSQL after installing them; this harness runs its own.
  DEBIAN_FRONTEND=noninteractive RUNLEVEL=1 apt-get install -y -qq "${need[@]}" >/dev/null
fi
pg_bin=$(find_pg_bin)
[ -n "$pg_bin" ] || die "no PostgreSQL server binaries under /usr/lib/postgresql"

if [ -n "${LB_BENCH_BIN:-}" ]; then
  bin=$LB_BENCH_BIN
  build="given (LB_BENCH_BIN)"
else
  log "cargo build --release"
  (cd "$root" && cargo build --release --quiet)
  bin=${CARGO_TARGET_DIR:-$root/target}/release/loyalty-bridge
  build="release (cargo build --release)"
fi
[ -x "$bin" ] || die "no binary at $bin"

# --- processes --------------------------------------------------------------------------------
work=$(mktemp -d /tmp/lb-instances.XXXXXX)
chmod 755 "$work"
pids=()
pg_data=$work/pg/data
cleanup() {
  local status=$? pid f
  if [ "$status" != 0 ]; then
    for f in "$work"/*.log "$work"/pg/server.log; do
      [ -s "$f" ] && { echo "--- $f" >&2; tail -n 5 "$f" >&2; }
    done
  fi
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
  [ -d "$pg_data" ] && runuser -u postgres -- "$pg_bin/pg_ctl" -D "$pg_data" -m immediate -w stop >/dev/null 2>&1 || true
  if [ "$status" != 0 ] && [ -n "${LB_BENCH_KEEP:-}" ]; then echo "kept $work" >&2; else rm -rf "$work"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

wait_port() {
  local port=$1 i
  for i in $(seq 1 150); do
    if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then return 0; fi
    sleep 0.1
  done
  die "nothing listens on port $port (logs in $work)"
}
start() { # name, command…: started in the background, its pid recorded in pid_<name>
  local name=$1; shift
  "$@" > "$work/$name.log" 2>&1 &
  pids+=($!)
  eval "pid_$name=$!"
}

log "PostgreSQL ($pg_bin) on 127.0.0.1:$p_pg"
id -u postgres >/dev/null 2>&1 \
  || useradd --system --user-group --home-dir /nonexistent --no-create-home --shell /usr/sbin/nologin postgres
mkdir -p "$work/pg" && chown postgres: "$work/pg"
runuser -u postgres -- "$pg_bin/initdb" -D "$pg_data" -U postgres --auth=trust -E UTF8 --no-sync > "$work/initdb.log" 2>&1 \
  || die "initdb failed (see $work/initdb.log)"
runuser -u postgres -- "$pg_bin/pg_ctl" -D "$pg_data" -l "$work/pg/server.log" -w -t 60 \
  -o "-h 127.0.0.1 -p $p_pg -k $work/pg -c max_connections=200" start > /dev/null \
  || die "PostgreSQL did not start"

log "the MAXMA sandbox: 20 calls a second allowed, burst 5 (+1 for jitter at its second boundaries)"
limit=26
start sandbox "$bin" sandbox maxma --listen "127.0.0.1:$p_sandbox" --key "$key" --limit-per-second "$limit"
wait_port "$p_sandbox"

# The example's files as shipped, but for the vendor (the sandbox) and the mappings' place.
sed -e "s|^base_url = \"https://api.maxma.com\"|base_url = \"http://127.0.0.1:$p_sandbox\"|" \
    -e "s|^mapping = \"../../mappings/maxma.toml\"|mapping = \"$root/mappings/maxma.toml\"|" \
    "$example/bridge.toml" > "$work/bridge.toml"
grep -q "127.0.0.1:$p_sandbox" "$work/bridge.toml" || die "bridge.toml: its base_url line changed; update instances.sh"
grep -q "$root/mappings/maxma.toml" "$work/bridge.toml" || die "bridge.toml: its mapping line changed; update instances.sh"
limits=$(grep -o '^limits = .*' "$work/bridge.toml") || die "bridge.toml has no limits line"
export LOYALTY_BRIDGE_DATABASE_URL="postgres://postgres@127.0.0.1:$p_pg/postgres"
export LOYALTY_BRIDGE_TOKEN=$token LOYALTY_BRIDGE_METRICS_TOKEN=bench-metrics-token MAXMA_API_KEY=$key
for n in 1 2 3; do
  log "bridge instance $n on 127.0.0.1:${p_bridges[n-1]}"
  LOYALTY_BRIDGE_LISTEN=127.0.0.1:${p_bridges[n-1]} start "bridge$n" "$bin" --config "$work/bridge.toml" serve
  wait_port "${p_bridges[n-1]}"
done

sed -e "s|listen 443 ssl;|listen 127.0.0.1:$p_lb;|" \
    -e "s|127.0.0.1:18081|127.0.0.1:${p_bridges[0]}|" -e "s|127.0.0.1:18082|127.0.0.1:${p_bridges[1]}|" \
    -e "s|127.0.0.1:18083|127.0.0.1:${p_bridges[2]}|" "$example/nginx.conf.example" > "$work/lb-example.conf"
sed -e "s|@WORK@|$work|g" "$here/nginx-instances.conf.in" > "$work/nginx-lb.conf"
mkdir -p "$work"/nginx-lb-{body,proxy}
start lb nginx -c "$work/nginx-lb.conf" -p "$work"
wait_port "$p_lb"

# --- the run ----------------------------------------------------------------------------------
log "$offered requests a second for ${secs}s through nginx; instance 2 SIGKILLed halfway"
python3 "$here/instances.py" drive --url "http://127.0.0.1:$p_lb" --vendor "http://127.0.0.1:$p_sandbox" \
  --token "$token" --key "$key" --seconds "$secs" --offered "$offered" --kill "$pid_bridge2" \
  --recalc "$here/recalc.json" --sale "$here/sale.json" --metrics-token bench-metrics-token \
  --bridges "http://127.0.0.1:${p_bridges[0]},http://127.0.0.1:${p_bridges[2]}" > "$work/drive.json"

log "stopping the sandbox for its per-second counts"
kill -TERM "$pid_sandbox"
wait "$pid_sandbox" || true
grep '^{' "$work/sandbox.log" | tail -n 1 > "$work/vendor.json"
[ -s "$work/vendor.json" ] || die "the sandbox printed no counts (see $work/sandbox.log)"

python3 "$here/instances.py" report --drive "$work/drive.json" --vendor "$work/vendor.json" \
  --out "$out" --binary "$bin" --build "$build" --limits "$limits" --vendor-limit "$limit"
log "wrote its section of $out"
