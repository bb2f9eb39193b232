#!/usr/bin/env bash
# The Argon2 flood benchmark: how a valid key's latency holds while another client sends
# well-formed keys with wrong secrets for an Argon2 scheme as fast as it can.
#
#   bench/flood.sh [--write]
#
# keygate runs on config/keygate.yaml (fresh file store, logging at warn); the valid client is
# examples/loadgen sending one `toon` (Argon2id) key, already verified once, on
# BENCH_STREAMS [8] streams over one HTTP/2 connection, as Envoy would. Each row measures it
# for BENCH_SECONDS [10] while a second loadgen (BENCH_FLOOD_STREAMS [32] streams over 4
# connections) floods the gRPC Check API with
#   none        nothing (the baseline, measured in the same run)
#   valid       the valid key itself (the control: what a flood of that volume costs when
#               every request is an allow)
#   unknown     toon keys whose ids do not exist (no hash can run: the table has no such id)
#   one-id      wrong secrets for one existing id (10 Argon2 runs a minute, then throttled)
#   many-ids    wrong secrets for BENCH_FLOOD_IDS [300] existing ids in turn (more than the
#               Argon2 pool can hash in a row's time: it is saturated for the whole row)
# and prints the valid key's decisions/s, p50, p99 and p99.9, its p99 less the baseline's,
# the flood's rate and how many Argon2 verifications ran. BENCH_ROUNDS [1] repeats the rows
# (interleaved). Every valid answer must be OK and every flood answer a denial (an allow for
# the control), or the run fails. --write puts the table in BENCHMARKS.md (between the flood markers).
# curl (for keygate's /readyz and /metrics) is installed from Debian's packages if missing
# (scripts/tools.sh).
set -euo pipefail
cd "$(dirname "$0")/.."
root="$PWD"
export PATH="$HOME/.cargo/bin:$PATH"

write=0
for a in "$@"; do
  case "$a" in
    --write) write=1 ;;
    -h | --help)
      sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'
      exit 0
      ;;
    *)
      echo "bench/flood.sh: unknown argument $a (see --help)" >&2
      exit 2
      ;;
  esac
done

secs="${BENCH_SECONDS:-10}"
streams="${BENCH_STREAMS:-8}"
flood_streams="${BENCH_FLOOD_STREAMS:-32}"
ids="${BENCH_FLOOD_IDS:-300}"
rounds="${BENCH_ROUNDS:-1}"
base="${BENCH_PORT_BASE:-18300}"
command_line="$(
  for v in BENCH_SECONDS BENCH_STREAMS BENCH_FLOOD_STREAMS BENCH_FLOOD_IDS BENCH_ROUNDS; do
    if [ -n "${!v:-}" ]; then printf '%s=%s ' "$v" "${!v}"; fi
  done
  printf 'bench/flood.sh'
  if [ $# -gt 0 ]; then printf ' %s' "$@"; fi
)"

die() {
  echo "bench/flood.sh: FAILED: $*" >&2
  exit 1
}
say() { echo "== $*" >&2; }
. scripts/tools.sh
kg_need_debian curl

say "building keygate and loadgen (release)"
cargo build --release --bin keygate --example loadgen >&2
target="${CARGO_TARGET_DIR:-target}"
keygate_bin="$root/$target/release/keygate"
loadgen_bin="$root/$target/release/examples/loadgen"

work="$(mktemp -d "${TMPDIR:-/tmp}/keygate-flood.XXXXXX")"
kg_pid=""
flood_pid=""
cleanup() {
  local rc=$?
  for p in $flood_pid $kg_pid; do kill -TERM "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  if [ $rc -ne 0 ]; then
    echo "bench/flood.sh: files kept in $work" >&2
    tail -n 20 "$work/keygate.err" >&2 2>/dev/null || true
  else
    rm -rf "$work"
  fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

p_grpc=$base p_http=$((base + 1)) p_admin=$((base + 2))
grpc="127.0.0.1:$p_grpc"
sed -e "s/127.0.0.1:9001/$grpc/" -e "s/127.0.0.1:9002/127.0.0.1:$p_http/" \
  -e "s/127.0.0.1:9003/127.0.0.1:$p_admin/" -e "s#path: data/keygate.json#path: $work/keygate.json#" \
  config/keygate.yaml >"$work/keygate.yaml"
grep -q "$grpc" "$work/keygate.yaml" && grep -q "$work/keygate.json" "$work/keygate.yaml" ||
  die "config/keygate.yaml no longer has the addresses this script replaces"

kg() { "$keygate_bin" --config "$work/keygate.yaml" "$@"; }
key_of() { sed -nE 's/.*"key":"([^"]+)".*/\1/p'; }
# N random base62 characters (reads a bounded amount, so no SIGPIPE under pipefail).
rand62() { head -c 2048 /dev/urandom | LC_ALL=C tr -dc 'A-Za-z0-9' | cut -c "1-$1"; }
# A toon key is <prefix><id>_<secret>: the same id with another secret of the same shape.
wrong_secret() { echo "${1%_*}_$(rand62 32)"; }

say "creating the valid key and $ids keys whose ids the flood uses"
valid="$(kg keys create --account bench --name valid --scheme toon | key_of)"
[[ $valid == toon_* ]] || die "keygate keys create gave no key"
: >"$work/many-ids"
for i in $(seq "$ids"); do
  k="$(kg keys create --account flood --name "f$i" --scheme toon | key_of)"
  [[ $k == toon_* ]] || die "keygate keys create gave no key"
  echo "x-api-key: $(wrong_secret "$k")" >>"$work/many-ids"
done
head -n1 "$work/many-ids" >"$work/one-id"
echo "x-api-key: $valid" >"$work/valid"
: >"$work/unknown"
for i in $(seq "$ids"); do
  echo "x-api-key: toon_$(rand62 12)_$(rand62 32)" >>"$work/unknown"
done

say "starting keygate on $grpc"
KEYGATE_LOG=warn "$keygate_bin" --config "$work/keygate.yaml" serve \
  </dev/null >"$work/keygate.out" 2>"$work/keygate.err" &
kg_pid=$!
for _ in $(seq 600); do
  kill -0 "$kg_pid" 2>/dev/null || die "keygate exited during start-up"
  [ "$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$p_http/readyz")" = 200 ] && break
  sleep 0.1
done

lg() { "$loadgen_bin" --addr "$grpc" --path /v1/ping "$@"; }
lg --check -H "x-api-key: $valid" >/dev/null || die "the valid key is not allowed"
lg --check --expect denied --keys-file "$work/one-id" >/dev/null || die "a wrong secret is not denied"
metrics() { curl -s "http://127.0.0.1:$p_http/metrics"; }
# Argon2 runs so far (a throttled answer runs none).
verifications() { metrics | awk '/^keygate_hash_verifications_total.*result="(ok|failed)"/ {n += $NF} END {print n + 0}'; }
decisions() { metrics | awk '/^keygate_decisions_total/ {n += $NF} END {print n + 0}'; }

results="$work/results.tsv"
: >"$results"
# row NAME: the valid client for BENCH_SECONDS (after 1 s warm-up) while the flood NAME runs.
row() {
  local name=$1 v0 v1 d0 flood_rate=0
  v0="$(verifications)"
  d0="$(decisions)"
  if [ "$name" != none ]; then
    local expect=denied
    [ "$name" = valid ] && expect=ok
    lg --keys-file "$work/$name" --expect "$expect" --connections 4 --concurrency "$flood_streams" \
      --warmup 0 --seconds $((secs + 3)) >"$work/flood.out" 2>"$work/flood.err" &
    flood_pid=$!
    # The flood is on once keygate has answered some of it.
    for _ in $(seq 100); do
      [ "$(decisions)" -gt "$d0" ] && break
      sleep 0.05
    done
  fi
  lg -H "x-api-key: $valid" --connections 1 --concurrency "$streams" --warmup 1 \
    --seconds "$secs" >"$work/valid.out" 2>"$work/valid.err" ||
    die "$name: the valid client failed: $(cat "$work/valid.err")"
  if [ -n "$flood_pid" ]; then
    wait "$flood_pid" || die "$name: the flood failed: $(cat "$work/flood.err")"
    flood_pid=""
    flood_rate="$(tail -n1 "$work/flood.out" | sed -nE 's/.* rate=([0-9.]+).*/\1/p')"
  fi
  v1="$(verifications)"
  local kv
  kv="$(tail -n1 "$work/valid.out")"
  get() { echo "$kv" | sed -nE "s/.*(^| )$1=([0-9.]+).*/\2/p"; }
  printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$name" "$(get rate)" "$(get p50_us)" "$(get p99_us)" \
    "$(get p999_us)" "$flood_rate" "$((v1 - v0))" >>"$results"
  say "$name: valid $(get rate)/s p99 $(get p99_us) µs; flood ${flood_rate}/s; Argon2 runs $((v1 - v0))"
}

for r in $(seq "$rounds"); do
  for name in none valid unknown one-id many-ids; do
    say "round $r/$rounds: $name"
    row "$name"
  done
done

table="$(
  echo "| flood | valid decisions/s | p50 µs | p99 µs | p99.9 µs | p99 − baseline | flood answers/s | Argon2 runs |"
  echo "|---|---:|---:|---:|---:|---:|---:|---:|"
  awk -F'\t' '
    { n[$1]++; k = $1 SUBSEP n[$1]; rate[k] = $2; p50[k] = $3; p99[k] = $4; p999[k] = $5; fr[k] = $6; runs[k] = $7
      if (!($1 in seen)) { seen[$1] = 1; order[++m] = $1 } }
    function med(a, name,   i, c, v, j, t) { c = n[name]; for (i = 1; i <= c; i++) v[i] = a[name SUBSEP i]
      for (i = 1; i <= c; i++) for (j = i + 1; j <= c; j++) if (v[j] + 0 < v[i] + 0) { t = v[i]; v[i] = v[j]; v[j] = t }
      return (c % 2) ? v[(c + 1) / 2] : (v[c / 2] + v[c / 2 + 1]) / 2 }
    END { b = med(p99, "none")
      for (i = 1; i <= m; i++) { x = order[i]
        printf "| %s | %.0f | %.0f | %.0f | %.0f | %+.0f µs | %.0f | %.0f |\n", x, med(rate, x), med(p50, x),
          med(p99, x), med(p999, x), med(p99, x) - b, med(fr, x), med(runs, x) } }' "$results"
)"
echo
echo "$table"
echo
echo "($(nproc) cores; medians over $rounds round(s); \`$command_line\`)"

if [ "$write" = 1 ]; then
  python3 - "$table" "$(nproc)" "$rounds" "$command_line" <<'EOF'
import re, sys
table, cores, rounds, cmd = sys.argv[1:5]
path = "BENCHMARKS.md"
text = open(path).read()
block = (f"<!-- flood:begin -->\n{table}\n\n{cores} cores, medians over {rounds} round(s), "
         f"`{cmd}`.\n<!-- flood:end -->")
if "<!-- flood:begin -->" in text:
    text = re.sub(r"<!-- flood:begin -->.*?<!-- flood:end -->", lambda _: block, text, flags=re.S)
else:
    text = text.rstrip("\n") + "\n\n## Argon2 flood\n\n" + block + "\n"
open(path, "w").write(text)
EOF
  say "BENCHMARKS.md updated"
fi
