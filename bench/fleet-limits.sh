#!/usr/bin/env bash
# Fleet-wide rate limits under load: one redis-server, N real keygate sidecars (release build)
# on it, one key with a limit of LIMIT requests per second, and wrk hammering every sidecar's
# /auth at once for SECONDS_PER_RUN. Prints, per N: the requests admitted per window in total
# (the run touches SECONDS_PER_RUN + 1 one-second windows, each of which demand fills, the
# partial first and last ones included) against the limit, the 429s per second, and the Redis
# commands per second per instance (from INFO stats over the run, heartbeats included).
#
# Usage: bench/fleet-limits.sh [N ...]        default: 1 3 6
#        LIMIT=200 SECONDS_PER_RUN=10 bench/fleet-limits.sh 3
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/tools.sh
kg_need_debian redis-server wrk curl
limit="${LIMIT:-200}"
seconds="${SECONDS_PER_RUN:-10}"
counts=("$@")
[ ${#counts[@]} -gt 0 ] || counts=(1 3 6)

cargo build --release -q
bin=target/release/keygate
work="$(mktemp -d)"
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
rport="$(free_port)"
redis-server --port "$rport" --bind 127.0.0.1 --save '' --appendonly no >/dev/null &
pids+=($!)
until redis-cli -p "$rport" ping >/dev/null 2>&1; do sleep 0.1; done

# The shipped config on Redis, with the HTTP listener on $2 and no other listener in the way.
config() {
  python3 - "$1" "$2" "$rport" <<'PY'
import sys
out, http, rport = sys.argv[1:]
s = open("config/keygate.yaml").read()
s = s.replace("  backend: file             # embedded default: one local file\n  path: data/keygate.json\n",
              f"  backend: redis\n  url: redis://127.0.0.1:{rport}/0\n")
s = s.replace("127.0.0.1:9001", "127.0.0.1:0").replace("127.0.0.1:9002", f"127.0.0.1:{http}")
s = s.replace("127.0.0.1:9003", "127.0.0.1:0")
open(out, "w").write(s)
PY
}

echo "| instances | limit per window | admitted per window | admitted ÷ limit | 429/s | Redis commands/s per instance |"
echo "|---:|---:|---:|---:|---:|---:|"
for n in "${counts[@]}"; do
  redis-cli -p "$rport" flushall >/dev/null
  ports=()
  for i in $(seq 1 "$n"); do
    p="$(free_port)"
    ports+=("$p")
    config "$work/k$i.yaml" "$p"
    KEYGATE_LOG=warn "$bin" --config "$work/k$i.yaml" serve 2>"$work/k$i.log" &
    pids+=($!)
  done
  key="$(KEYGATE_LOG=warn "$bin" --config "$work/k1.yaml" keys create --account fleet \
    --scheme live --rate-limit "fleet=$limit/1s" | sed -E 's/.*"key":"([^"]+)".*/\1/')"
  for p in "${ports[@]}"; do
    until [ "$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$p/readyz")" = 200 ]; do
      sleep 0.1
    done
  done
  before="$(redis-cli -p "$rport" info stats | sed -n 's/^total_commands_processed:\([0-9]*\).*/\1/p')"
  for p in "${ports[@]}"; do
    wrk -t1 -c4 -d"${seconds}s" -H "authorization: Bearer $key" -H "x-original-uri: /v1/x" \
      "http://127.0.0.1:$p/auth" >"$work/wrk$p.txt" &
  done
  wait_wrk=$(jobs -p | tail -n "$n")
  for j in $wait_wrk; do wait "$j"; done
  after="$(redis-cli -p "$rport" info stats | sed -n 's/^total_commands_processed:\([0-9]*\).*/\1/p')"
  ok=""
  refused=""
  for p in "${ports[@]}"; do
    m="$(curl -s "http://127.0.0.1:$p/metrics")"
    ok+=" $(grep -E '^keygate_decisions_total\{frontend="nginx",reason="ok",result="allow"\}' <<<"$m" | awk '{print $2}')"
    refused+=" $(grep -E '^keygate_decisions_total\{frontend="nginx",reason="rate_limited",result="deny"\}' <<<"$m" | awk '{print $2}')"
  done
  ok="$(python3 -c 'import sys; print(sum(float(x) for x in sys.argv[1:]))' $ok)"
  refused="$(python3 -c 'import sys; print(sum(float(x) for x in sys.argv[1:]))' $refused)"
  python3 - "$n" "$limit" "$seconds" "$ok" "$refused" "$before" "$after" <<'PY'
import sys
n, limit, secs, ok, refused, before, after = map(float, sys.argv[1:])
per_window = ok / (secs + 1)
print(f"| {n:.0f} | {limit:.0f} | {per_window:.1f} | {per_window/limit:.3f} | {refused/secs:.0f} | {(after-before)/secs/n:.1f} |")
PY
  for p in "${pids[@]:1}"; do kill "$p" 2>/dev/null || true; done
  for p in "${pids[@]:1}"; do wait "$p" 2>/dev/null || true; done
  pids=("${pids[0]}")
done
