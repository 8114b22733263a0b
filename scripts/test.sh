#!/usr/bin/env bash
# Runs the whole test suite: formatting and lint checks, unit tests, and the integration tests
# against real tessera and redis-server processes. Installs what it needs first.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup.sh
source scripts/env.sh
cargo fmt --all -- --check
cargo clippy --workspace --all-targets -- -D warnings
# `cargo test` builds binaries only for their own package's tests: build `tessera` first, so the
# integration tests never run an old binary.
cargo build --workspace
cargo test --workspace
