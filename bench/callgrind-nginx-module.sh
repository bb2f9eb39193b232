#!/usr/bin/env bash
# Instructions per request of nginx (one process) serving a static file, counted by callgrind,
# which repeats to a fraction of a percent where wall-clock throughput on a shared machine
# swings by ±15 %: nginx alone (bench/nginx-file.conf), with keygate loaded but the location
# `keygate off` (what the module costs a request it does not check: the access handler, the
# identity headers stripped, the header filter), and `keygate on` with the SHA-256 key and with
# the Argon2 key after its first verification (bench/nginx-module-file.conf). Each in its own
# nginx: warm-up, counters zeroed, wrk -t1 -c4 for SECONDS, counters dumped. User-space
# instructions only (the kernel's share of a request is the same in every row).
#
# valgrind's CPU has no SHA extensions: SHA-256 costs about 3,300 instructions more per
# request under callgrind than on a CPU that has them (sha2 picks its code at run time).
#
# Usage: bench/callgrind-nginx-module.sh     (CALLGRIND_SECONDS [8]; CALLGRIND_KEEP=DIR keeps
#        the dumps for callgrind_annotate)
set -euo pipefail
cd "$(dirname "$0")/.."
root="$PWD"
. scripts/tools.sh
kg_need_debian wrk nginx curl valgrind
kg_nginx_module_deps
nginx_bin="$(kg_nginx)"
secs="${CALLGRIND_SECONDS:-8}"

cargo build --release --workspace --lib --bins >&2
target="${CARGO_TARGET_DIR:-target}"
keygate_bin="$root/$target/release/keygate"
module="$root/$target/release/libkeygate_nginx.so"

work="$(mktemp -d "${TMPDIR:-/tmp}/keygate-callgrind.XXXXXX")"
pid=""
cleanup() {
  [ -n "$pid" ] && kill "$pid" 2>/dev/null || true
  wait 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
port="$(free_port)"

sed -e "s#path: data/keygate.json#path: $work/keygate.json#" \
  -e "s/127.0.0.1:900[123]/127.0.0.1:0/" config/keygate.yaml >"$work/keygate.yaml"
key_of() { sed -nE 's/.*"key":"([^"]+)".*/\1/p'; }
sha="Authorization: Bearer $("$keygate_bin" --config "$work/keygate.yaml" keys create \
  --account bench --scheme live | key_of)"
argon="x-api-key: $("$keygate_bin" --config "$work/keygate.yaml" keys create \
  --account bench --scheme toon | key_of)"
mkdir -p "$work/static/v1"
printf 'ok\n' >"$work/static/v1/ping"

measure() { # NAME TEMPLATE KEYGATE HEADER
  local name=$1 template=$2 keygate=$3 hdr=$4 dir="$work/$1"
  mkdir -p "$dir/logs" "$dir/tmp"
  sed -e "s#listen 127.0.0.1:8000;#listen 127.0.0.1:$port;#" \
    -e "s#root /srv/keygate-bench;#root $work/static;#" \
    -e "s#/usr/lib/nginx/modules/libkeygate_nginx.so#$module#" \
    -e "s#/etc/keygate/keygate.yaml#$work/keygate.yaml#" \
    -e "s#keygate on; #keygate $keygate;#" "$template" >"$dir/nginx.conf"
  valgrind --tool=callgrind --callgrind-out-file="$dir/cg.%p" --dump-instr=no \
    "$nginx_bin" -p "$dir" -c "$dir/nginx.conf" -g 'daemon off; master_process off;' \
    >"$dir/out" 2>"$dir/valgrind.log" &
  pid=$!
  local url="http://127.0.0.1:$port/v1/ping" code=""
  for _ in $(seq 600); do
    code="$(curl -s -o /dev/null -w '%{http_code}' -H "$hdr" "$url" || true)"
    [ "$code" = 200 ] && break
    sleep 0.2
  done
  [ "$code" = 200 ] || { echo "$name: the key is not allowed ($code)" >&2; exit 1; }
  wrk -t1 -c4 -d3s -H "$hdr" "$url" >/dev/null
  callgrind_control -z "$pid" >/dev/null
  local out requests
  out="$(wrk -t1 -c4 -d"${secs}s" -H "$hdr" "$url")"
  requests="$(awk '/requests in/ {print $1}' <<<"$out")"
  grep -q 'Non-2xx' <<<"$out" && { echo "$name: non-2xx answers" >&2; exit 1; }
  callgrind_control -d "$pid" >/dev/null
  local ir
  ir="$(cat "$dir"/cg.*.[0-9]* | awk '/^summary:/ {s += $2} END {printf "%d", s}')"
  if [ -n "${CALLGRIND_KEEP:-}" ]; then
    mkdir -p "$CALLGRIND_KEEP"
    for f in "$dir"/cg.*.[0-9]*; do cp "$f" "$CALLGRIND_KEEP/$name.$(basename "$f")"; done
  fi
  kill "$pid"
  wait "$pid" 2>/dev/null || true
  pid=""
  echo "$name $requests $ir"
}
{
  measure nginx-alone bench/nginx-file.conf on "$sha"
  measure keygate-off bench/nginx-module-file.conf off "$sha"
  measure sha256 bench/nginx-module-file.conf on "$sha"
  measure argon2-cached bench/nginx-module-file.conf on "$argon"
} | python3 -c '
import sys
rows = [l.split() for l in sys.stdin]
print("| configuration | requests | instructions per request | over nginx alone |")
print("|---|---:|---:|---:|")
base = None
for name, n, ir in rows:
    v = int(ir) / int(n)
    base = v if base is None else base
    print(f"| {name} | {n} | {v:,.0f} | {v - base:+,.0f} |")
'
