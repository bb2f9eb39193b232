#!/usr/bin/env bash
# The fleet benchmark (bench/fleet.py): one Redis primary and replica, N real keygate sidecars
# on this machine, revocation latency to the last of them and Redis's load per instance.
#
# Usage: bench/fleet.sh [INSTANCES [ROUNDS]]     default 100 instances, 20 revocations
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/tools.sh
kg_need_debian redis-server
cargo build --release -q --bin keygate
exec python3 bench/fleet.py "$@"
