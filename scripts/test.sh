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
log=$(mktemp)
trap 'rm -f "$log"' EXIT
# Every test binary runs even after one fails, so one run names every failing test.
status=0
cargo test --workspace --no-fail-fast 2>&1 | tee "$log" || status=$?
# One closing line with the totals over every test binary (doc-test runs with nothing to run
# come last in cargo's output and would otherwise close it).
awk '/^test result:/ {
       for (i = 2; i <= NF; i++) {
         if ($i ~ /^passed;?$/) p += $(i - 1)
         if ($i ~ /^failed;?$/) f += $(i - 1)
       }
     }
     END { printf "tests: %d passed, %d failed\n", p, f }' "$log"
exit "$status"
