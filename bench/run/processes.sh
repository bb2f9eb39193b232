# Sourced by bench/run.sh: its processes, each started in the background (pinned when pinning)
# with its output in $work, kept in PID by name, stopped, waited for, and the shipped configs
# rendered with their addresses replaced. Uses run.sh's $work, $pin, $nginx_bin and die.

# start NAME CPU COMMAND...: runs COMMAND in the background (pinned to CPU when pinning),
# stdout and stderr to $work/NAME.out and .err.
start() {
  local name=$1 cpu=$2
  shift 2
  if [ "$pin" = 1 ]; then set -- taskset -c "$cpu" "$@"; fi
  "$@" </dev/null >"$work/$name.out" 2>"$work/$name.err" &
  PID[$name]=$!
}

stop() {
  local name=$1 pid=${PID[$1]:-}
  [ -n "$pid" ] || return 0
  kill -TERM "$pid" 2>/dev/null || true
  for _ in $(seq 50); do
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.1
  done
  kill -KILL "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
  unset "PID[$name]"
}

alive() { kill -0 "${PID[$1]}" 2>/dev/null; }

logs() {
  local name=$1
  for f in "$work/$name.err" "$work/$name.out" "$work/$name/logs/error.log"; do
    [ -s "$f" ] && { echo "--- $f"; tail -n 30 "$f"; }
  done >&2
  return 0
}

port_free() { ! (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# wait_http NAME URL: polls URL until it answers at all (any HTTP status), for up to 60 s.
wait_http() {
  local name=$1 url=$2
  for _ in $(seq 600); do
    alive "$name" || {
      logs "$name"
      die "$name exited during start-up"
    }
    if curl -s -o /dev/null --max-time 2 "$url"; then return 0; fi
    sleep 0.1
  done
  logs "$name"
  die "$name did not answer $url within 60 s"
}

# render TEMPLATE OUT FROM TO [FROM TO]...: the template with each FROM replaced, failing if a
# FROM is not in it (a config edit must not leave the benchmark on the wrong address).
render() {
  local text from to
  text="$(cat "$1")"
  local out=$2
  shift 2
  while [ $# -gt 0 ]; do
    from=$1 to=$2
    shift 2
    [[ $text == *"$from"* ]] || die "$out: the template no longer contains '$from'"
    text="${text//"$from"/"$to"}"
  done
  printf '%s\n' "$text" >"$out"
}

start_nginx() { # NAME CPU TEMPLATE FROM TO...
  local name=$1 cpu=$2 template=$3
  shift 3
  mkdir -p "$work/$name/logs" "$work/$name/tmp"
  render "$template" "$work/$name/nginx.conf" "$@"
  start "$name" "$cpu" "$nginx_bin" -p "$work/$name" -c "$work/$name/nginx.conf" \
    -g 'daemon off; master_process off;'
}

