# Sourced by the scripts: one cargo target directory per machine, outside the clone, so every
# build (developer shells, CI) reuses what was compiled before.
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/tessera/target}"
mkdir -p "$CARGO_TARGET_DIR"
