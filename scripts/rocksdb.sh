#!/usr/bin/env bash
# Builds RocksDB's static library once per machine into a cache folder outside the clone, and
# prints the two variables that make the rocksdb crate link it instead of compiling RocksDB
# again (about 18 minutes on 2 cores, and again whenever bindgen's inputs change):
#
#   ROCKSDB_LIB_DIR=<cache>/lib ROCKSDB_STATIC=1
#
# Idempotent: a finished build is reused. The library comes from a tiny project that depends
# only on librocksdb-sys (the version rocksdb 0.25 uses, with lz4 and bindgen-runtime), built in
# release so every Tessera build links an optimised RocksDB.
#
# usage: eval "$(scripts/rocksdb.sh)"
set -euo pipefail

SYS_VERSION="0.19.0"
cache="${TESSERA_CACHE:-$HOME/.cache/tessera}/rocksdb-$SYS_VERSION"
lib="$cache/lib/librocksdb.a"
if [ ! -f "$lib" ]; then
  echo "rocksdb: building librocksdb.a into $cache (once per machine, about 18 minutes)" >&2
  project="$cache/build"
  mkdir -p "$project/src" "$cache/lib"
  cat > "$project/Cargo.toml" <<TOML
[package]
name = "tessera-rocksdb-cache"
version = "0.0.0"
edition = "2021"
publish = false

[dependencies]
librocksdb-sys = { version = "=$SYS_VERSION", default-features = false, features = ["static", "lz4", "bindgen-runtime"] }

[profile.release]
debug = false
TOML
  echo "fn main() {}" > "$project/src/main.rs"
  (cd "$project" && CARGO_TARGET_DIR="$project/target" cargo build --release -q >&2)
  built=$(find "$project/target/release/build" -name librocksdb.a -path "*librocksdb-sys-*" | head -1)
  if [ -z "$built" ]; then
    echo "rocksdb: the build finished without librocksdb.a" >&2
    exit 1
  fi
  cp "$built" "$lib.tmp"
  mv "$lib.tmp" "$lib"
  rm -rf "$project/target"
fi
echo "export ROCKSDB_LIB_DIR=$cache/lib ROCKSDB_STATIC=1"
