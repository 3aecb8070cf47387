#!/usr/bin/env bash
# The deployment build: the release profile plus profile-guided optimisation (PGO).
#
#   bash scripts/build-release.sh        # ≈ 2 release builds + 30 s of training
#
# 1. builds an instrumented release binary (cargo-pgo, which adds -Cprofile-generate);
# 2. runs it as the MAXMA emulator and as a bridge in front of it, with point-of-sale checkouts
#    for LB_PGO_SECONDS (30) seconds (scripts/pgo-train.py): the instrumented binary counts
#    which code runs how often;
# 3. builds the release binary again with those counts (-Cprofile-use): LLVM lays out the hot
#    path together and inlines and predicts branches by them. On the 2-core benchmark machine
#    that is about a fifth less CPU per recalc at 1,000/s (benches/results.md).
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
# `cargo pgo info` also checks BOLT's tools (not used here) and fails without them.
info=$(cargo pgo info 2>&1 || true)
grep -q 'llvm-profdata\]: found at' <<< "$info" \
  || die "no llvm-profdata for this rustc (rustup component add llvm-tools); plain cargo build --release still works"

# cargo-pgo builds for the host triple explicitly, so that the profiling flags reach our code
# and its dependencies but not build scripts and proc-macros.
triple=$(rustc -vV | sed -n 's/^host: //p')
built=$target_dir/$triple/release/loyalty-bridge

log "instrumented build"
cargo pgo build -- --quiet --bin loyalty-bridge
log "training run (${seconds}s)"
python3 "$root/scripts/pgo-train.py" --bin "$built" --seconds "$seconds"
log "optimised build"
cargo pgo optimize build -- --quiet --bin loyalty-bridge

mkdir -p "$target_dir/release-pgo"
cp "$built" "$target_dir/release-pgo/loyalty-bridge"
log "built $target_dir/release-pgo/loyalty-bridge"
