#!/usr/bin/env bash
# Bulk import rate (bench/import.py): `keygate keys import --file` of N SHA-256 digests into a
# fresh redis-server and a fresh file store, and the same file again (every line skipped).
#
# Usage: bench/import.sh [LINES...]     default 100000
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/tools.sh
kg_need_debian redis-server
cargo build --release -q --bin keygate
exec python3 bench/import.py "$@"
