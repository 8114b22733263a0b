#!/usr/bin/env bash
# Builds Tessera (installing what it needs first) and starts a standalone server that
# `redis-cli` can talk to. Arguments go to `tessera server` (default: port 6379 on 127.0.0.1).
#
#   ./scripts/start.sh                 # then, in another shell: redis-cli ping
#   ./scripts/start.sh --port 7000
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup.sh
source scripts/env.sh
cargo build --release -p tessera
exec "$CARGO_TARGET_DIR/release/tessera" server "$@"
