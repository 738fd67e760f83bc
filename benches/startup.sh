#!/usr/bin/env bash
# Time from `aurora serve` (no configuration: embedded SQLite in a fresh directory) to the first
# 200 from /health, over RUNS fresh starts. Release build.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/services.sh
RUNS="${RUNS:-10}"
PORT="${PORT:-15090}"
cargo build --release --bin aurora --quiet
BIN="$CARGO_TARGET_DIR/release/aurora"
for i in $(seq 1 "$RUNS"); do
  dir=$(mktemp -d)
  start=$(date +%s%N)
  (cd "$dir" && HTTP_PORT="$PORT" RUST_LOG=warn exec "$BIN" serve) &
  pid=$!
  until curl -sf -o /dev/null "http://127.0.0.1:$PORT/health"; do sleep 0.005; done
  end=$(date +%s%N)
  echo "run $i: $(( (end - start) / 1000000 )) ms to healthy"
  kill -TERM "$pid"; wait "$pid" || true
  rm -rf "$dir"
done
