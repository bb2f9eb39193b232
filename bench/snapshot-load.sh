#!/usr/bin/env bash
# Cold loads from Redis (benches/snapshot_load.rs): a table of N keys read from the per-key
# records and from the compact snapshot, each in a fresh process, with memory, the snapshot's
# build time from the records, and a management write's latency at each size.
#
# Usage: bench/snapshot-load.sh [keys...]      default: 1000 1000000 (10M needs ~8 GB for Redis)
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/tools.sh
kg_redis_server >/dev/null
exec cargo bench --bench snapshot_load -- "$@"
