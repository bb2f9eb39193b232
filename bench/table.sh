#!/usr/bin/env bash
# The key table at fleet sizes (benches/table.rs): resident bytes per SHA-256 key, build
# time, lookup time and the CPU one change costs. Each size runs in a process of its own, so
# one size's freed memory does not hide in the next one's figure; each twice, with glibc's
# default heap and with its heap on transparent huge pages (GLIBC_TUNABLES=glibc.malloc.hugetlb=1,
# which a table past a few million keys needs for lookups to stay near their cache-hot cost:
# see docs/scale.md).
#
# Usage: bench/table.sh [keys...]        default: 1000000 10000000 (the 10M run needs ~2 GB)
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$HOME/.cargo/bin:$PATH"
sizes=("$@")
[ ${#sizes[@]} -gt 0 ] || sizes=(1000000 10000000)
cargo bench --bench table --no-run
for n in "${sizes[@]}"; do
  for tunables in "" "glibc.malloc.hugetlb=1"; do
    echo "GLIBC_TUNABLES=${tunables:-(none)}: $(GLIBC_TUNABLES="$tunables" cargo bench --bench table -- "$n" 2>/dev/null | grep ' keys: ')"
  done
done
