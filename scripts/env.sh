# Sourced by the scripts: one cargo target directory per machine, outside the clone, so every
# build (developer shells, CI) reuses what was compiled before.
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/tessera/target}"
mkdir -p "$CARGO_TARGET_DIR"
# RocksDB: link the library scripts/rocksdb.sh built once per machine (setup.sh builds it), so
# no build compiles RocksDB itself. Every cargo command must see the same two variables, or
# librocksdb-sys rebuilds.
eval "$("$(dirname "${BASH_SOURCE[0]}")/rocksdb.sh")"
