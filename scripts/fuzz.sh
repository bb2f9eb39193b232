#!/usr/bin/env bash
# Fuzzes keygate with libFuzzer: every target in fuzz/fuzz_targets/ for a bounded time, by
# default 30 s each, starting from the seed corpora in fuzz/corpus/<target>/. Fails on the
# first crash, panic, timeout or out-of-memory, leaving the input in fuzz/artifacts/<target>/.
#
#   scripts/fuzz.sh [seconds-per-target] [target...]
#
# The targets are built the way cargo-fuzz builds them (SanitizerCoverage instrumentation,
# `--cfg fuzzing`, debug assertions and overflow checks in a release build) but with plain
# cargo, so nothing needs installing first. KEYGATE_FUZZ_SANITIZER: `address` (the default:
# AddressSanitizer, which needs nightly compiler flags; RUSTC_BOOTSTRAP=1 lets the stable
# toolchain accept them) or `none` (a faster build; what CI runs). Replay an input with
#   fuzz/target/<sanitizer>/<host triple>/release/<target> fuzz/artifacts/<target>/<file>
# New inputs libFuzzer finds go to fuzz/work/<target>/ (ignored by git), so the seeds stay as
# committed.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$HOME/.cargo/bin:$PATH"

seconds="${1:-30}"
shift || true
sanitizer="${KEYGATE_FUZZ_SANITIZER:-address}"
triple="$(rustc -vV | sed -n 's/^host: //p')"

flags="-Cpasses=sancov-module -Cllvm-args=-sanitizer-coverage-level=4"
flags+=" -Cllvm-args=-sanitizer-coverage-inline-8bit-counters"
flags+=" -Cllvm-args=-sanitizer-coverage-pc-table -Cllvm-args=-sanitizer-coverage-trace-compares"
flags+=" --cfg fuzzing -Cdebug-assertions -Coverflow-checks"
case "$sanitizer" in
  address)
    flags+=" -Zsanitizer=address"
    export RUSTC_BOOTSTRAP=1
    ;;
  none) ;;
  *)
    echo "scripts/fuzz.sh: KEYGATE_FUZZ_SANITIZER must be address or none" >&2
    exit 2
    ;;
esac

if [ $# -gt 0 ]; then
  targets=("$@")
else
  targets=()
  for f in fuzz/fuzz_targets/*.rs; do targets+=("$(basename "$f" .rs)"); done
fi
out="fuzz/target/$sanitizer"
echo "== building ${#targets[@]} fuzz targets (sanitizer: $sanitizer)"
# --target keeps the instrumentation off build scripts and proc macros.
RUSTFLAGS="$flags" cargo build --manifest-path fuzz/Cargo.toml --locked --release --bins \
  --target "$triple" --target-dir "$out"
for t in "${targets[@]}"; do
  mkdir -p "fuzz/work/$t" "fuzz/artifacts/$t"
  echo "== fuzzing $t for ${seconds}s"
  "$out/$triple/release/$t" "fuzz/work/$t" "fuzz/corpus/$t" \
    -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 \
    -artifact_prefix="fuzz/artifacts/$t/" 2>&1 | grep -v '^#[0-9]' || {
    echo "scripts/fuzz.sh: $t failed; the input is in fuzz/artifacts/$t/" >&2
    exit 1
  }
done
echo "fuzzed ${#targets[@]} targets for ${seconds}s each: no crash"
