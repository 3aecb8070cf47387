#!/usr/bin/env bash
# Issue #25's A/B: does the complexity still pay? Plain release builds of this checkout, the
# same but for one thing each. Both things it compares were removed after it ran (see
# benches/README.md): to rerun it, check out f7aa624, the last commit that had them.
#   shipped    as it is: hyper patched (vendor/hyper), connections on the connection threads
#   published  hyper as published on crates.io (the [patch.crates-io] entry removed, in a copy)
#   workers    --features bench-tokio-workers: connections on tokio's work-stealing runtime
#   published-workers  both (the hyper fix mattered on the work-stealing runtime)
# then the load harness (benches/load/run.sh) against each, in rounds that rotate the order, with
# the shipped binary as the vendor emulator every time (so only the bridge differs), and a
# summary of the bridge's recalc throughput relative to nginx (× (b)) and its added p50 at
# 1,000 recalc/s, per round and as medians.
#
# Run as root from a checkout: bash benches/ab/run.sh
# Knobs: LB_AB_DIR (/tmp/lb-ab: builds and reports), LB_AB_ROUNDS (3), LB_AB_VARIANTS
# ("shipped published workers published-workers"), LB_AB_SKIP_BUILD (1: reuse the binaries in LB_AB_DIR), LB_AB_BUILD_ONLY (1: build, then stop); the load
# harness' own knobs pass through (LB_BENCH_SECONDS, LB_BENCH_SAT_ROUNDS, ...).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
if ! grep -q '^hyper = { path = "vendor/hyper" }$' "$root/Cargo.toml"; then
  echo "this checkout has neither the patched hyper nor the connection threads (removed in issue #25):" >&2
  echo "check out f7aa624 to rerun the A/B" >&2
  exit 1
fi
dir=${LB_AB_DIR:-/tmp/lb-ab}
rounds=${LB_AB_ROUNDS:-3}
read -r -a variants <<< "${LB_AB_VARIANTS:-shipped published workers published-workers}"
mkdir -p "$dir"
log() { printf '== %s\n' "$*" >&2; }

build() { # variant → $dir/<variant>
  local variant=$1 target=$dir/target
  case $variant in
    shipped)
      (cd "$root" && CARGO_TARGET_DIR=$target cargo build --release --quiet)
      cp "$target/release/loyalty-bridge" "$dir/shipped" ;;
    workers)
      (cd "$root" && CARGO_TARGET_DIR=$target cargo build --release --quiet --features bench-tokio-workers)
      cp "$target/release/loyalty-bridge" "$dir/workers" ;;
    published)
      # A copy of the tracked files without the patch; its own target dir, so the shipped
      # build's hyper is not rebuilt back and forth.
      rm -rf "$dir/src-published"
      mkdir -p "$dir/src-published"
      (cd "$root" && git ls-files -z | xargs -0 cp --parents -t "$dir/src-published")
      python3 - "$dir/src-published/Cargo.toml" <<'EOF'
import re, sys
path = sys.argv[1]
text = open(path).read()
text, n = re.subn(r'\n\[patch\.crates-io\]\nhyper = \{ path = "vendor/hyper" \}\n', "\n", text)
assert n == 1, "no [patch.crates-io] hyper entry to remove"
open(path, "w").write(text)
EOF
      rm -rf "$dir/src-published/vendor/hyper"
      if [ ! -d "$dir/target-published" ]; then cp -a "$target" "$dir/target-published"; fi
      # Without the patch, cargo resolves hyper afresh: the newest published 1.x, as a user of
      # the crate would get it (the summary logs which).
      (cd "$dir/src-published" && CARGO_TARGET_DIR=$dir/target-published cargo build --release --quiet)
      cp "$dir/target-published/release/loyalty-bridge" "$dir/published" ;;
    published-workers)
      # Both changes at once: the hyper fix mattered on the work-stealing runtime.
      [ -d "$dir/src-published" ] || build published
      (cd "$dir/src-published" && CARGO_TARGET_DIR=$dir/target-published cargo build --release --quiet --features bench-tokio-workers)
      cp "$dir/target-published/release/loyalty-bridge" "$dir/published-workers" ;;
    *) echo "unknown variant $variant" >&2; exit 1 ;;
  esac
}

if [ "${LB_AB_SKIP_BUILD:-0}" != 1 ]; then
  # The shipped build first: it is the emulator in every run, and seeds the others' target dirs.
  log "building shipped"
  build shipped
  for v in "${variants[@]}"; do
    if [ "$v" != shipped ]; then
      log "building $v"
      build "$v"
    fi
  done
fi
if [ "${LB_AB_BUILD_ONLY:-0}" = 1 ]; then exit 0; fi
log "hyper in the published build: $(cd "$dir/src-published" 2>/dev/null && cargo tree -p hyper --depth 0 2>/dev/null || echo '(not built)')"

for round in $(seq 1 "$rounds"); do
  # Rotate the order so that no variant always runs first (or last) in a round.
  n=${#variants[@]}
  for i in $(seq 0 $((n - 1))); do
    v=${variants[$(((i + round - 1) % n))]}
    log "round $round: $v"
    LB_BENCH_BIN=$dir/$v LB_BENCH_SANDBOX_BIN=$dir/shipped LB_BENCH_OUT=$dir/$v-$round.md \
      bash "$root/benches/load/run.sh"
  done
done
python3 "$here/summary.py" "$dir" "$rounds" "${variants[@]}" | tee "$dir/summary.md"
