#!/usr/bin/env bash
# Runs one node. With no configuration it uses the embedded default: SQLite under ./data, no
# other services. Pass extra arguments through to `aurora`, e.g. `scripts/run.sh --config a.toml`.
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-/var/cache/aurora/target}"
exec cargo run --release --bin aurora -- serve "$@"
