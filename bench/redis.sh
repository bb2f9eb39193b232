#!/usr/bin/env bash
# Runs the Redis benchmarks (benches/redis.rs, release profile): revocation propagation
# between two sidecars, and the cold load of 1,000,000 keys. The program starts its own
# redis-server on a free port (redis-server must be on PATH) and prints the tables that
# BENCHMARKS.md quotes.
#
# Usage: bench/redis.sh
set -euo pipefail

cd "$(dirname "$0")/.."
exec cargo bench --bench redis
