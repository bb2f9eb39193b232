#!/usr/bin/env bash
# Runs the core micro-benchmarks (benches/core/) and prints the median of each, plus the
# decide figures as multiples of one SHA-256 of a key (baseline/sha256_54_bytes), which
# travel between machines better than nanoseconds do.
#
# Usage: bench/core.sh [criterion filter]     e.g. bench/core.sh decide/
# Results are read back from Criterion's estimates.json files written by this run only.
set -euo pipefail

cd "$(dirname "$0")/.."
target="${CARGO_TARGET_DIR:-target}"
out="$target/criterion"
mkdir -p "$out"
stamp="$(mktemp)"
trap 'rm -f "$stamp"' EXIT

# Short warm-up and measurement: the whole run stays within a few minutes, and the figures
# are stable to a few percent for these sub-microsecond routines.
cargo bench --bench core -- --noplot --warm-up-time 1 --measurement-time 3 "$@"

# One "name median_ns" line per benchmark this run wrote, in the order they ran.
results="$(
  find "$out" -path '*/new/estimates.json' -newer "$stamp" -printf '%T@ %h\n' |
    sort -n |
    while read -r _ dir; do
      name="$(sed -n 's/.*"full_id":"\([^"]*\)".*/\1/p' "$dir/benchmark.json")"
      median="$(grep -o '"median":{"confidence_interval":{[^}]*},"point_estimate":[^,}]*' \
        "$dir/estimates.json" | sed 's/.*"point_estimate"://')"
      echo "$name $median"
    done
)"

if [[ -z "$results" ]]; then
  echo "no benchmark results written by this run" >&2
  exit 1
fi

echo
echo "Core micro-benchmarks: median per iteration"
echo "$results" | awk '
  function human(ns) {
    if (ns >= 1e6) return sprintf("%.2f ms", ns / 1e6)
    if (ns >= 1e3) return sprintf("%.2f µs", ns / 1e3)
    return sprintf("%.1f ns", ns)
  }
  { name[NR] = $1; ns[NR] = $2; if ($1 == "baseline/sha256_54_bytes") base = $2 }
  END {
    printf "| %-28s | %14s | %10s |\n", "benchmark", "median (ns)", "median"
    printf "|%s|%s|%s|\n", "------------------------------", "---------------:", "-----------:"
    for (i = 1; i <= NR; i++)
      printf "| %-28s | %14.1f | %10s |\n", name[i], ns[i], human(ns[i])
    if (base > 0) {
      print ""
      print "Ratios to baseline/sha256_54_bytes (" sprintf("%.1f", base) " ns), same run:"
      for (i = 1; i <= NR; i++)
        if (name[i] ~ /^decide\//)
          printf "  %-28s %6.1f x\n", name[i], ns[i] / base
    }
  }'
