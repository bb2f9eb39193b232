#!/usr/bin/env bash
# The Argon2 flood through Envoy with keygate inside it (envoy/envoy-module.yaml): how a valid
# key's latency holds while another client sends well-formed keys with wrong secrets for an
# Argon2 scheme as fast as it can.
#
#   bench/flood-module.sh
#
# Envoy (one worker) runs the module on config/keygate.yaml (fresh file store) in front of the
# cheap nginx upstream. The valid client is wrk (-t1 -cBENCH_CONNECTIONS [8] --latency) sending one `toon`
# (Argon2id) key, verified once before; each row measures it for BENCH_SECONDS [10] while a
# second wrk (-c32, a Lua script cycling through the keys) sends
#   none        nothing (the baseline, measured in the same run)
#   valid       the valid key itself (the control: what a flood of that volume costs Envoy when
#               every request is an allow)
#   many-ids    wrong secrets for BENCH_FLOOD_IDS [100] existing ids in turn (more than the
#               Argon2 pool hashes in a row's time: it is saturated, then throttled per id)
# and prints the valid key's requests/s, p50 and p99, its p99 less the baseline's, and how
# many Argon2 verifications ran (Envoy's keygate stats, which lag by up to a second: counts
# spill into the next row). BENCH_ROUNDS [1] repeats the rows.
# Every valid answer must be 200, every flood answer 401, or the run fails.
set -euo pipefail
cd "$(dirname "$0")/.."
root="$PWD"
export PATH="$HOME/.cargo/bin:$PATH"
. scripts/tools.sh

secs="${BENCH_SECONDS:-10}"
ids="${BENCH_FLOOD_IDS:-100}"
rounds="${BENCH_ROUNDS:-1}"
conns="${BENCH_CONNECTIONS:-8}"
base="${BENCH_PORT_BASE:-18400}"
die() {
  echo "bench/flood-module.sh: FAILED: $*" >&2
  exit 1
}

envoy_bin="$(kg_envoy)"
nginx_bin="$(kg_nginx)"
wrk_bin="$(kg_wrk)"
kg_need_debian curl
echo "== building keygate and the Envoy module (release)" >&2
# The same targets as bench/run.sh builds, so both reuse one build.
cargo build --release --workspace --lib --bins --examples >&2
target="${CARGO_TARGET_DIR:-target}"
keygate="$root/$target/release/keygate"
export ENVOY_DYNAMIC_MODULES_SEARCH_PATH="$root/$target/release"

work="$(mktemp -d)"
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  rm -rf "$work"
}
trap cleanup EXIT
p_up=$base p_envoy=$((base + 1)) p_admin=$((base + 2))

mkdir -p "$work/up/logs" "$work/up/tmp"
sed "s/127.0.0.1:8080/127.0.0.1:$p_up/" bench/nginx-upstream.conf >"$work/up/nginx.conf"
"$nginx_bin" -p "$work/up" -c "$work/up/nginx.conf" -g "daemon off;" &
pids+=($!)

sed "s|path: data/keygate.json|path: $work/keygate.json|" config/keygate.yaml >"$work/keygate.yaml"
create() { "$keygate" --config "$work/keygate.yaml" keys create --account flood --scheme toon |
  sed -nE 's/.*"key":"([^"]+)".*/\1/p'; }
valid="$(create)"
echo "== creating $ids Argon2 keys to flood with wrong secrets" >&2
: >"$work/flood.keys"
for _ in $(seq "$ids"); do
  k="$(create)"
  # The same id, another secret of the same shape.
  c="${k: -1}"
  [ "$c" = A ] && c=B || c=A
  echo "${k%?}$c" >>"$work/flood.keys"
done
{
  echo "keys = {}"
  while read -r k; do echo "table.insert(keys, \"$k\")"; done <"$work/flood.keys"
  cat <<'EOF'
n = 0
request = function()
  n = n + 1
  return wrk.format("GET", "/v1/flood", {["x-api-key"] = keys[(n % #keys) + 1]})
end
EOF
} >"$work/flood.lua"

sed -e "s/port_value: 10000/port_value: $p_envoy/" -e "s/port_value: 9901/port_value: $p_admin/" \
  -e "s/port_value: 8080/port_value: $p_up/" -e "s|/etc/keygate/keygate.yaml|$work/keygate.yaml|" \
  envoy/envoy-module.yaml >"$work/envoy.yaml"
taskset -c 0 "$envoy_bin" -c "$work/envoy.yaml" --concurrency 1 --disable-hot-restart \
  --log-level warn >"$work/envoy.out" 2>&1 &
pids+=($!)
for _ in $(seq 300); do
  [ "$(curl -s -o /dev/null -w '%{http_code}' -H "x-api-key: $valid" \
    "http://127.0.0.1:$p_envoy/v1/ping" || true)" = 200 ] && break
  sleep 0.1
done
[ "$(curl -s -o /dev/null -w '%{http_code}' -H "x-api-key: $valid" \
  "http://127.0.0.1:$p_envoy/v1/ping")" = 200 ] || die "the valid key is not allowed: $(cat "$work/envoy.out")"

verifications() {
  curl -s "http://127.0.0.1:$p_admin/stats/prometheus" |
    awk '/^envoy_keygate_hash_verifications\{/{n += $2} END {print n + 0}'
}
to_ms() {
  awk -v v="$1" 'BEGIN {
    if (v ~ /us$/) { sub(/us$/, "", v); printf "%.3f", v / 1000 }
    else if (v ~ /ms$/) { sub(/ms$/, "", v); printf "%.3f", v }
    else if (v ~ /s$/) { sub(/s$/, "", v); printf "%.3f", v * 1000 }
    else printf "nan" }'
}

printf '%-10s %6s %12s %9s %9s %12s %14s\n' row round "valid req/s" "p50 ms" "p99 ms" "p99 - none" "verifications" >&2
for round in $(seq "$rounds"); do
  base_p99=""
  for row in none valid many-ids; do
    v0="$(verifications)"
    flood_pid=""
    if [ "$row" = many-ids ]; then
      taskset -c 1 "$wrk_bin" -t1 -c32 "-d$((secs + 2))s" -s "$work/flood.lua" \
        "http://127.0.0.1:$p_envoy/v1/flood" >"$work/flood.$round.out" 2>&1 &
      flood_pid=$!
      sleep 1 # the flood is under way before the measured run starts
    elif [ "$row" = valid ]; then
      taskset -c 1 "$wrk_bin" -t1 -c32 "-d$((secs + 2))s" -H "x-api-key: $valid" \
        "http://127.0.0.1:$p_envoy/v1/control" >"$work/control.$round.out" 2>&1 &
      flood_pid=$!
      sleep 1
    fi
    taskset -c 1 "$wrk_bin" -t1 "-c$conns" "-d${secs}s" --latency -H "x-api-key: $valid" \
      "http://127.0.0.1:$p_envoy/v1/ping" >"$work/valid.$row.$round.out" 2>&1
    [ -n "$flood_pid" ] && wait "$flood_pid"
    out="$work/valid.$row.$round.out"
    if grep -q 'Non-2xx' "$out"; then cat "$out" >&2; die "$row: the valid key was refused"; fi
    if [ "$row" = many-ids ]; then
      f="$work/flood.$round.out"
      total="$(awk '/requests in/{print $1}' "$f")"
      refused="$(awk '/Non-2xx or 3xx responses/{print $NF}' "$f")"
      [ -n "$total" ] && [ "$total" = "${refused:-0}" ] || {
        cat "$f" >&2
        die "$row: a flood request was allowed ($refused of $total refused)"
      }
    fi
    rps="$(awk '/^Requests\/sec:/{print $2}' "$out")"
    p50="$(to_ms "$(awk '$1 == "50%"{print $2}' "$out")")"
    p99="$(to_ms "$(awk '$1 == "99%"{print $2}' "$out")")"
    [ -z "$base_p99" ] && base_p99="$p99"
    diff="$(awk -v a="$p99" -v b="$base_p99" 'BEGIN {printf "%+.3f", a - b}')"
    printf '%-10s %6s %12.0f %9.3f %9.3f %12s %14s\n' "$row" "$round" "$rps" "$p50" "$p99" "$diff" \
      "$(($(verifications) - v0))"
  done
done
