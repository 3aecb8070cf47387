#!/usr/bin/env bash
# The deployment build: the release profile plus profile-guided optimisation (PGO), and BOLT's
# post-link layout when LLVM's BOLT is installed.
#
#   bash scripts/build-release.sh        # 2–3 release builds and 1–2 training runs of 30 s
#
# 1. builds an instrumented release binary (cargo-pgo, which adds -Cprofile-generate);
# 2. runs it as the MAXMA emulator and as a bridge in front of it, with point-of-sale checkouts
#    for LB_PGO_SECONDS (30) seconds (scripts/pgo-train.py): it counts which code runs how often;
# 3. builds the release binary again with those counts (-Cprofile-use): LLVM inlines, lays out
#    and predicts branches by them;
# 4. with BOLT (Debian: `apt-get install bolt-19`; LB_BOLT=0 skips it): instruments that binary,
#    trains it the same way, and rewrites it with its hot code packed together (cargo-pgo's
#    `bolt` commands). A recalc at a light load runs with instruction caches left cold by other
#    processes, so where its code sits matters.
# On the 2-core benchmark machine, at 1,000 recalc/s: PGO ≈ 13 % less CPU per recalc, with BOLT
# ≈ 21 % (benches/results.md).
#
# The binary is copied to target/release-pgo/loyalty-bridge (under CARGO_TARGET_DIR when set).
# Needs: rustup's llvm-tools component and cargo-pgo (both installed here when missing),
# python3. A plain `cargo build --release` works without any of this; it is only slower.
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
export PATH="$HOME/.cargo/bin:$PATH"
target_dir=${CARGO_TARGET_DIR:-$root/target}
seconds=${LB_PGO_SECONDS:-30}
log() { printf '== %s\n' "$*" >&2; }
die() { printf 'build-release.sh: %s\n' "$*" >&2; exit 1; }

command -v python3 >/dev/null || die "python3 is needed for the training run"
# llvm-profdata must match the LLVM inside rustc (profile formats change between versions):
# rustup's llvm-tools component is the one that does (a no-op when it is there already).
if command -v rustup >/dev/null; then
  rustup component add llvm-tools 2>&1 | grep -v 'is up to date' >&2 || true
fi
# 0.3 speaks rustc's current flags; --locked keeps its dependencies at the versions it was tested with.
if ! cargo pgo --version >/dev/null 2>&1; then
  log "cargo install cargo-pgo"
  cargo install cargo-pgo --version '^0.3' --locked
fi
# BOLT works on the linked binary, so any recent release will do: the newest on PATH or in
# Debian's /usr/lib/llvm-N.
bolt=""
if [ "${LB_BOLT:-1}" != 0 ]; then
  for dir in "" $(ls -d /usr/lib/llvm-*/bin 2>/dev/null | sort -t- -k2 -n -r); do
    if [ -z "$dir" ]; then
      command -v llvm-bolt >/dev/null && command -v merge-fdata >/dev/null && { bolt=PATH; break; }
    elif [ -x "$dir/llvm-bolt" ] && [ -x "$dir/merge-fdata" ]; then
      export PATH="$dir:$PATH"
      bolt=$dir
      break
    fi
  done
fi
# `cargo pgo info` also checks BOLT's tools and fails without them: read its lines instead.
info=$(cargo pgo info 2>&1 || true)
grep -q 'llvm-profdata\]: found at' <<< "$info" \
  || die "no llvm-profdata for this rustc (rustup component add llvm-tools); plain cargo build --release still works"

# cargo-pgo builds for the host triple explicitly, so that the profiling flags reach our code
# and its dependencies but not build scripts and proc-macros.
triple=$(rustc -vV | sed -n 's/^host: //p')
built=$target_dir/$triple/release/loyalty-bridge
train() { python3 "$root/scripts/pgo-train.py" --bin "$1" --seconds "$seconds"; }

log "PGO: instrumented build"
cargo pgo build -- --quiet --bin loyalty-bridge
log "PGO: training run (${seconds}s)"
train "$built"
if [ -n "$bolt" ]; then
  log "BOLT ($bolt): the PGO build, instrumented"
  cargo pgo bolt build --with-pgo -- --quiet --bin loyalty-bridge
  log "BOLT: training run (${seconds}s)"
  train "$built-bolt-instrumented"
  log "BOLT: the PGO build, rewritten"
  cargo pgo bolt optimize --with-pgo -- --quiet --bin loyalty-bridge
  built=$built-bolt-optimized
  what="release + PGO + BOLT"
else
  log "PGO: optimised build (no llvm-bolt found: without BOLT)"
  cargo pgo optimize build -- --quiet --bin loyalty-bridge
  what="release + PGO"
fi

mkdir -p "$target_dir/release-pgo"
cp "$built" "$target_dir/release-pgo/loyalty-bridge"
echo "$what" > "$target_dir/release-pgo/BUILD"
log "built $target_dir/release-pgo/loyalty-bridge ($what)"
