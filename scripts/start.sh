#!/usr/bin/env bash
# Builds Tessera (installing what it needs first) and starts a whole local cluster in the
# foreground with `tessera up`: a control member, 3 shards each with a replica, and the proxy on
# 127.0.0.1:6379 that `redis-cli` talks to. Ctrl-C stops it; running it again starts the same
# cluster over the same data (./tessera-cluster). Arguments go to `tessera up`.
#
#   ./scripts/start.sh                       # then, in another shell: redis-cli ping
#   ./scripts/start.sh --port 7000 --shards 5 --replicas 0 --dir /var/lib/tessera
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup.sh
source scripts/env.sh
cargo build --release -p tessera
exec "$CARGO_TARGET_DIR/release/tessera" up "$@"
