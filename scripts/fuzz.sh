#!/usr/bin/env bash
# Fuzzes keygate with cargo-fuzz (libFuzzer): every target in fuzz/ for a bounded time, by
# default 30 s each, starting from the seed corpora in fuzz/corpus/<target>/. Fails on the
# first crash, panic, timeout or out-of-memory, leaving the input in fuzz/artifacts/<target>/
# (replay it with `RUSTC_BOOTSTRAP=1 cargo fuzz run <target> fuzz/artifacts/<target>/<file>`).
#
#   scripts/fuzz.sh [seconds-per-target] [target...]
#
# New inputs libFuzzer finds go to fuzz/work/<target>/ (ignored by git), so the seeds stay as
# committed. cargo-fuzz needs nightly compiler flags; RUSTC_BOOTSTRAP=1 lets the stable
# toolchain accept them. KEYGATE_FUZZ_SANITIZER=none turns AddressSanitizer off.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$HOME/.cargo/bin:$PATH"

seconds="${1:-30}"
shift || true
if ! command -v cargo-fuzz >/dev/null 2>&1; then
  echo "installing cargo-fuzz from crates.io"
  cargo install --locked cargo-fuzz
fi
export RUSTC_BOOTSTRAP=1
sanitizer="${KEYGATE_FUZZ_SANITIZER:-address}"

if [ $# -gt 0 ]; then
  targets=("$@")
else
  mapfile -t targets < <(cargo fuzz list)
fi
cargo fuzz build --sanitizer "$sanitizer"
for t in "${targets[@]}"; do
  mkdir -p "fuzz/work/$t"
  echo "== fuzzing $t for ${seconds}s"
  cargo fuzz run --sanitizer "$sanitizer" "$t" "fuzz/work/$t" "fuzz/corpus/$t" -- \
    -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1
done
echo "fuzzed ${#targets[@]} targets for ${seconds}s each: no crash"
