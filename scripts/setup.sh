#!/usr/bin/env bash
# Installs what Tessera needs on a Debian machine, idempotently, and prints the environment the
# other scripts use. Safe to run again: it only installs what is missing.
#
#   - Debian packages: redis-server and redis-tools (the oracle and redis-benchmark for tests and
#     benchmarks), netcat, python3 (benchmark harness), libclang-dev (bindgen, for RocksDB from
#     the persistence issue on), nutcracker (twemproxy, the proxy benchmark's baseline),
#     python3-redis (redis-py's cluster client, a client the cluster tests run).
#   - librocksdb.a, built once per machine into ~/.cache/tessera (scripts/rocksdb.sh).
#   - A cargo target directory outside the clone ($CARGO_TARGET_DIR, default
#     ~/.cache/tessera/target), reused by every build on this machine, CI included.
set -euo pipefail

need=()
command -v redis-server >/dev/null 2>&1 || need+=(redis-server)
command -v redis-benchmark >/dev/null 2>&1 || need+=(redis-tools)
command -v nc >/dev/null 2>&1 || need+=(netcat-openbsd)
command -v python3 >/dev/null 2>&1 || need+=(python3)
dpkg -s libclang-dev >/dev/null 2>&1 || need+=(libclang-dev)
# twemproxy, the baseline of the proxy benchmark (bench/proxy.py).
[ -x /usr/sbin/nutcracker ] || need+=(nutcracker)
# redis-py's cluster client, for Debian's own python3 (tests/clients/redis_py_cluster.py).
/usr/bin/python3 -c 'import redis.cluster' >/dev/null 2>&1 || need+=(python3-redis)
if [ ${#need[@]} -gt 0 ]; then
  echo "setup: installing ${need[*]}" >&2
  SUDO=""
  if [ "$(id -u)" != 0 ]; then SUDO=sudo; fi
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need[@]}" >/dev/null
fi
# Debian's package starts a redis-server as a service where systemd runs; Tessera's tests and
# benchmarks start their own on free ports and never use port 6379.

if ! command -v cargo >/dev/null 2>&1; then
  echo "setup: cargo not found. Tessera needs Rust 1.95 or newer (rustup, https://rustup.rs)." >&2
  exit 1
fi

# RocksDB's static library, once per machine (about 18 minutes the first time, then nothing).
"$(dirname "$0")/rocksdb.sh" >/dev/null
