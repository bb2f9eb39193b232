#!/usr/bin/env bash
# Runs the Redis benchmarks (benches/redis/, release profile): revocation propagation
# between two sidecars, and the cold load of 1,000,000 keys. The program starts its own
# redis-server on a free port (installed from Debian's packages if missing, by
# scripts/tools.sh) and prints the tables that BENCHMARKS.md quotes.
#
# Usage: bench/redis.sh
set -euo pipefail

cd "$(dirname "$0")/.."
. scripts/tools.sh
kg_redis_server >/dev/null
exec cargo bench --bench redis
