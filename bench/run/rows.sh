# Sourced by bench/run.sh: one row of the benchmark. A row's proxy is started from its config,
# checked (probe, sanity), warmed up and measured with wrk (measure), or, for the direct gRPC
# rows, with loadgen; results are appended to $results and $work/loadgen.tsv. Uses run.sh's
# settings ($secs, $warmup, $conns, $pin, the ports and binaries) and processes.sh.

# CPU ticks of a process so far (user and system).
ticks() { sed 's/.*) //' "/proc/$1/stat" | awk '{print $12 + $13}'; }
# Connections to or from 127.0.0.1:PORT closed recently (in TIME_WAIT for 60 s): read before
# and after a run, how many connections to the authorization server the proxy opened and
# closed meanwhile.
closed() { ss -Htan state time-wait "( sport = :$1 or dport = :$1 )" | wc -l; }
machine_busy() { awk '/^cpu /{print $2 + $3 + $4 + $7 + $8 + $9; exit}' /proc/stat; }

# probe URL [HEADER]: prints "<status> <x-bench header or ->".
probe() {
  local url=$1 hdr=${2:-}
  local args=(-s -o /dev/null -D "$work/probe.headers" -w '%{http_code}' --max-time 5)
  [ -n "$hdr" ] && args+=(-H "$hdr")
  local code
  code="$(curl "${args[@]}" "$url" || true)"
  local marker
  marker="$(tr -d '\r' <"$work/probe.headers" | sed -n 's/^[Xx]-[Bb]ench: *//p' | head -n1)"
  echo "$code ${marker:--}"
}

# sanity ROW URL HEADER NO_KEY_STATUS MARKER: the key gets 200 from MARKER's responder;
# without a key (and with a wrong one, where a key is needed) the status is NO_KEY_STATUS.
sanity() {
  local row=$1 url=$2 hdr=$3 nokey=$4 marker=$5 got
  got="$(probe "$url" "$hdr")"
  [ "$got" = "200 $marker" ] || die "$row: with the key expected '200 $marker', got '$got'"
  got="$(probe "$url")"
  [ "${got%% *}" = "$nokey" ] || die "$row: without a key expected $nokey, got '$got'"
  if [ "$nokey" = 401 ]; then
    local name=${hdr%%:*} value=${hdr#*: }
    local bad
    if [[ $value == "Bearer "* ]]; then bad="Bearer $(wrong "${value#Bearer }")"; else bad="$(wrong "$value")"; fi
    got="$(probe "$url" "$name: $bad")"
    [ "${got%% *}" = 401 ] || die "$row: with a wrong key expected 401, got '$got'"
  fi
}

to_ms() { # wrk's "1.23ms" / "456.78us" / "1.01s" -> milliseconds
  awk -v v="$1" 'BEGIN {
    if (v ~ /us$/) { sub(/us$/, "", v); printf "%.3f", v / 1000 }
    else if (v ~ /ms$/) { sub(/ms$/, "", v); printf "%.3f", v }
    else if (v ~ /s$/) { sub(/s$/, "", v); printf "%.3f", v * 1000 }
    else printf "nan" }'
}

# measure ID PROXY AUTHZ URL HEADER: wrk warm-up, then the measured wrk run; appends a line
# to $results.
measure() {
  local id=$1 proxy=$2 authz=${3%%:*} authz_port=${3#*:} url=$4 hdr=$5
  local wrk=("$wrk_bin" -t1 "-c$conns" --latency)
  [ -n "$hdr" ] && wrk+=(-H "$hdr")
  [ "$pin" = 1 ] && wrk=(taskset -c "$cpu_others" "${wrk[@]}")
  "${wrk[@]}" "-d${warmup}s" "$url" >"$work/$id.warmup" 2>&1 ||
    die "$id: wrk warm-up failed: $(cat "$work/$id.warmup")"
  local p0 a0 u0 m0 p1 a1 u1 m1 t0 t1 out="$work/$id.r$round.wrk"
  p0="$(ticks "${PID[$proxy]}")"
  a0=0
  [ -n "$authz" ] && a0="$(ticks "${PID[$authz]}")"
  u0="$(ticks "${PID[upstream]}")"
  m0="$(machine_busy)"
  local c0=0 c1=0
  [ -n "$authz" ] && c0="$(closed "$authz_port")"
  t0="$(date +%s.%N)"
  # wrk's own CPU time, from the subshell's `times` (children's user and system time).
  ("${wrk[@]}" "-d${secs}s" "$url" >"$out" 2>&1 || exit 1; times >"$out.times") ||
    die "$id: wrk failed: $(cat "$out")"
  t1="$(date +%s.%N)"
  m1="$(machine_busy)"
  [ -n "$authz" ] && c1="$(closed "$authz_port")"
  p1="$(ticks "${PID[$proxy]}")"
  a1=0
  [ -n "$authz" ] && a1="$(ticks "${PID[$authz]}")"
  u1="$(ticks "${PID[upstream]}")"
  if grep -q 'Non-2xx or 3xx responses' "$out"; then
    cat "$out" >&2
    die "$id: the measured run had non-2xx answers (see above)"
  fi
  if grep -q 'Socket errors' "$out"; then
    cat "$out" >&2
    die "$id: the measured run had socket errors (see above)"
  fi
  local rps reqs p50 p99 wrk_cpu
  rps="$(awk '/^Requests\/sec:/{print $2}' "$out")"
  reqs="$(awk '/requests in/{print $1}' "$out")"
  p50="$(to_ms "$(awk '$1 == "50%"{print $2}' "$out")")"
  p99="$(to_ms "$(awk '$1 == "99%"{print $2}' "$out")")"
  [ -n "$rps" ] && [ -n "$reqs" ] && [ "$reqs" -gt 0 ] || die "$id: cannot read wrk's output: $(cat "$out")"
  wrk_cpu="$(tail -n1 "$out.times" | awk '{
    n = 0; for (i = 1; i <= NF; i++) { split($i, a, /[ms]/); n += a[1] * 60 + a[2] } print n }')"
  # Seconds of CPU: ours (proxy, authorization server, upstream, wrk) and the machine's.
  awk -v id="$id" -v round="$round" -v rps="$rps" -v reqs="$reqs" -v p50="$p50" -v p99="$p99" \
    -v hz="$clk_tck" -v dp=$((p1 - p0)) -v da=$((a1 - a0)) -v du=$((u1 - u0)) \
    -v dm=$((m1 - m0)) -v dc=$((c1 - c0)) -v wc="$wrk_cpu" -v t0="$t0" -v t1="$t1" -v n="$ncpu" 'BEGIN {
      ours = (dp + da + du) / hz + wc
      others = (dm / hz - ours) / ((t1 - t0) * n) * 100
      if (others < 0) others = 0
      printf "%s\t%s\t%s\t%s\t%s\t%.2f\t%.2f\t%.1f\t%.2f\n", id, round, rps, p50, p99,
        dp / hz * 1e6 / reqs, da / hz * 1e6 / reqs, others, (dc < 0 ? 0 : dc) * 1000 / reqs
    }' >>"$results"
  tail -n1 "$results" | awk -F'\t' '{
    printf "   %-16s %9.0f req/s  p50 %6.3f ms  p99 %6.3f ms  proxy %5.1f µs/req  authz %5.1f µs/req  authz conns %5.1f/1k req  others %4.1f%%\n",
      $1, $3, $4, $5, $6, $7, $9, $8 }' >&2
}

# wanted ID: whether BENCH_ONLY selects the row.
wanted() { [ -z "${BENCH_ONLY:-}" ] || [[ " $BENCH_ONLY " == *" $1 "* ]]; }

envoy_row() { # ID TEMPLATE AUTHZ HEADER NO_KEY MARKER FROM TO...
  wanted "$1" || return 0
  local id=$1 template=$2 authz=$3 hdr=$4 nokey=$5 marker=$6
  shift 6
  render "$template" "$work/$id.yaml" \
    "port_value: 10000" "port_value: $p_envoy" \
    "port_value: 9901" "port_value: $p_envoy_admin" "$@"
  start envoy "$cpu_proxy" "$envoy_bin" -c "$work/$id.yaml" --concurrency 1 \
    --disable-hot-restart --log-level warn
  for _ in $(seq 600); do
    alive envoy || {
      logs envoy
      die "$id: Envoy exited during start-up"
    }
    [ "$(curl -s --max-time 2 "http://127.0.0.1:$p_envoy_admin/ready" || true)" = LIVE ] && break
    sleep 0.1
  done
  local url="http://127.0.0.1:$p_envoy/v1/ping"
  sanity "$id" "$url" "$hdr" "$nokey" "$marker"
  measure "$id" envoy "$authz" "$url" "$hdr"
  stop envoy
}

nginx_row() { # ID TEMPLATE AUTHZ HEADER NO_KEY MARKER FROM TO...
  wanted "$1" || return 0
  local id=$1 template=$2 authz=$3 hdr=$4 nokey=$5 marker=$6
  shift 6
  rm -rf "$work/front"
  start_nginx front "$cpu_proxy" "$template" "listen 127.0.0.1:8000;" "listen 127.0.0.1:$p_nginx;" "$@"
  wait_http front "http://127.0.0.1:$p_nginx/"
  local url="http://127.0.0.1:$p_nginx/v1/ping"
  sanity "$id" "$url" "$hdr" "$nokey" "$marker"
  measure "$id" front "$authz" "$url" "$hdr"
  stop front
  # No worker lost, no panic caught, no keygate warning meanwhile.
  if grep -Eq '\[(alert|crit|emerg)\]|keygate: (.*WARN|.*ERROR|panic)' "$work/front/logs/error.log"; then
    logs front
    die "$id: nginx logged alerts or keygate warnings during the run (see above)"
  fi
  rm -rf "$work/front" # its access log
}

# loadgen_row ID SERVER PORT HEADER: the direct gRPC run against one server.
loadgen_row() {
  wanted "$1" || return 0
  local id=$1 server=$2 port=$3 hdr=$4
  local lg=("$loadgen_bin" --addr "127.0.0.1:$port" -H "$hdr")
  [ "$pin" = 1 ] && lg=(taskset -c "$cpu_proxy" "${lg[@]}")
  "${lg[@]}" --check >/dev/null || die "$id: the check request was not allowed"
  if [ "$server" = keygate ]; then
    "${lg[@]:0:${#lg[@]}-2}" --check --expect denied >/dev/null ||
      die "$id: a request without a key was not denied"
  fi
  local a0 a1 out="$work/$id.r$round.loadgen"
  a0="$(ticks "${PID[$server]}")"
  "${lg[@]}" --connections "$lg_conns" --concurrency "$lg_streams" --seconds "$secs" \
    --warmup "$warmup" >"$out" 2>&1 || die "$id: loadgen failed: $(cat "$out")"
  a1="$(ticks "${PID[$server]}")"
  tail -n1 "$out" | tr ' ' '\n' | awk -F= -v id="$id" -v round="$round" -v hz="$clk_tck" \
    -v da=$((a1 - a0)) '{ v[$1] = $2 } END {
      printf "%s\t%s\t%s\t%s\t%s\t%s\t%.2f\t%s\n", id, round, v["rate"], v["p50_us"],
        v["p99_us"], v["p999_us"], da / hz * 1e6 / v["total"], v["response_bytes"]
    }' >>"$work/loadgen.tsv"
  tail -n1 "$work/loadgen.tsv" | awk -F'\t' '{
    printf "   %-16s %9.0f decisions/s  p50 %7.1f µs  p99 %7.1f µs  p99.9 %7.1f µs  server %5.1f µs/decision  response %s B\n",
      $1, $3, $4, $5, $6, $7, $8 }' >&2
}

