#!/usr/bin/env bash
# Instructions per request of Envoy with keygate inside (envoy/envoy-module.yaml, one worker),
# counted by callgrind, which repeats to a fraction of a percent where wall-clock throughput on
# a shared machine swings by ±15 %: for a SHA-256 key without rate limits, and for one with two
# limits it never reaches (per key at 1 s, per account at 1 d). Each is measured in the same
# Envoy process: warm-up, counters zeroed, wrk -t1 -c4 for SECONDS, counters dumped.
#
# Usage: bench/callgrind-module.sh            (CALLGRIND_SECONDS [15]; CALLGRIND_KEEP=DIR keeps
#        the dumps for callgrind_annotate)
set -euo pipefail
cd "$(dirname "$0")/.."
root="$PWD"
. scripts/tools.sh
kg_need_debian wrk nginx curl valgrind
nginx_bin="$(kg_nginx)"
envoy_bin="$(kg_envoy)"
secs="${CALLGRIND_SECONDS:-15}"

cargo build --release --workspace --lib --bins >&2
target="${CARGO_TARGET_DIR:-target}"
export ENVOY_DYNAMIC_MODULES_SEARCH_PATH="$root/$target/release"
keygate_bin="$root/$target/release/keygate"

work="$(mktemp -d "${TMPDIR:-/tmp}/keygate-callgrind.XXXXXX")"
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
p_up="$(free_port)" p_envoy="$(free_port)" p_admin="$(free_port)"

mkdir -p "$work/up/logs" "$work/up/tmp"
sed "s/127.0.0.1:8080/127.0.0.1:$p_up/" bench/nginx-upstream.conf >"$work/up/nginx.conf"
"$nginx_bin" -p "$work/up" -c "$work/up/nginx.conf" -g 'daemon off; master_process off;' &
pids+=($!)

sed -e "s#path: data/keygate.json#path: $work/keygate.json#" \
  -e "s/127.0.0.1:900[123]/127.0.0.1:0/" config/keygate.yaml >"$work/keygate.yaml"
key_of() { sed -nE 's/.*"key":"([^"]+)".*/\1/p'; }
plain="$("$keygate_bin" --config "$work/keygate.yaml" keys create --account bench --scheme live | key_of)"
limited="$("$keygate_bin" --config "$work/keygate.yaml" keys create --account bench-limited \
  --scheme live --rate-limit burst=4000000000/1s --rate-limit daily=4000000000/1d/account | key_of)"

sed -e "s/port_value: 10000/port_value: $p_envoy/" -e "s/port_value: 9901/port_value: $p_admin/" \
  -e "s/port_value: 8080/port_value: $p_up/" -e "s#/etc/keygate/keygate.yaml#$work/keygate.yaml#" \
  envoy/envoy-module.yaml >"$work/envoy.yaml"
valgrind --tool=callgrind --callgrind-out-file="$work/cg.%p" --dump-instr=no \
  "$envoy_bin" -c "$work/envoy.yaml" --concurrency 1 --disable-hot-restart --log-level warn \
  >"$work/envoy.out" 2>"$work/valgrind.log" &
envoy_pid=$!
pids+=($envoy_pid)
for _ in $(seq 1200); do
  [ "$(curl -s --max-time 2 "http://127.0.0.1:$p_admin/ready" || true)" = LIVE ] && break
  sleep 0.25
done

measure() { # NAME KEY
  local url="http://127.0.0.1:$p_envoy/v1/ping" hdr="Authorization: Bearer $2"
  [ "$(curl -s -o /dev/null -w '%{http_code}' -H "$hdr" "$url")" = 200 ] || {
    echo "$1: the key is not allowed" >&2
    exit 1
  }
  wrk -t1 -c4 -d3s -H "$hdr" "$url" >/dev/null
  callgrind_control -z "$envoy_pid" >/dev/null
  local out requests
  out="$(wrk -t1 -c4 -d"${secs}s" -H "$hdr" "$url")"
  requests="$(awk '/requests in/ {print $1}' <<<"$out")"
  grep -q 'Non-2xx' <<<"$out" && { echo "$1: non-2xx answers" >&2; exit 1; }
  rm -f "$work"/cg.*.[0-9]*
  callgrind_control -d "$envoy_pid" >/dev/null
  local ir
  ir="$(cat "$work"/cg.*.[0-9]* | awk '/^summary:/ {s += $2} END {printf "%d", s}')"
  if [ -n "${CALLGRIND_KEEP:-}" ]; then
    mkdir -p "$CALLGRIND_KEEP"
    for f in "$work"/cg.*.[0-9]*; do cp "$f" "$CALLGRIND_KEEP/$1.$(basename "$f")"; done
  fi
  echo "$1 $requests $ir"
}
{
  measure no-limits "$plain"
  measure two-limits "$limited"
  measure no-limits "$plain"
  measure two-limits "$limited"
} | python3 -c '
import sys
rows = [l.split() for l in sys.stdin]
print("| key | requests | instructions per request |")
print("|---|---:|---:|")
per = {}
for name, n, ir in rows:
    v = int(ir) / int(n)
    per.setdefault(name, []).append(v)
    print(f"| {name} | {n} | {v:,.0f} |")
a, b = min(per["no-limits"]), min(per["two-limits"])
print(f"\ntwo limits ÷ none, instructions per request: {b / a:.3f} (throughput ratio at equal IPC: {a / b:.3f})")
'
