#!/usr/bin/env bash
# The crate graph is the architecture: fails if a library crate's normal dependencies reach
# what its layer must not use. keygate-core is pure (no async runtime, no HTTP, no Redis);
# the store, config and authorizer crates carry no servers (they are linked into the in-proxy
# modules, which must not bring tonic, hyper or axum into a proxy's process).
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$HOME/.cargo/bin:$PATH"

check() {
  local crate="$1" forbidden="$2" tree found
  tree="$(cargo tree --locked -p "$crate" -e normal --prefix none --format '{p}')"
  found="$(echo "$tree" | awk '{print $1}' | sort -u | grep -Ex "$forbidden" || true)"
  if [ -n "$found" ]; then
    echo "scripts/check-deps.sh: $crate depends on $(echo "$found" | tr '\n' ' ')" >&2
    return 1
  fi
  echo "$crate: none of ($forbidden)"
}

servers='tonic|hyper|hyper-util|axum|tower|h2|envoy-types|prost|clap|prometheus'
check keygate-core "tokio|tonic|hyper|hyper-util|axum|redis|h2|tower|mio|$servers"
check keygate-store "$servers"
check keygate-config "$servers"
check keygate-authz "$servers"
# The nginx module brings no server into nginx's workers (prometheus only encodes its text).
check keygate-nginx "${servers%|prometheus}"
