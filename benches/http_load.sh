#!/usr/bin/env bash
# HTTP throughput of one release node, measured with wrk from a second process on loopback.
#
#   benches/http_load.sh            # PostgreSQL + Redis (the server backend)
#   BACKEND=sqlite benches/http_load.sh
#
# Two workloads, as in the issue's comparison with the original Flask stack:
#   1. GET /health
#   2. GET /chat_api/sessions?limit=50: the 50 newest rows of one user (authenticated, org-scoped
#      transaction with row-level security on PostgreSQL), out of 200 sessions of that user.
# Bounded: each wrk run lasts DURATION seconds with CONNECTIONS connections.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/services.sh

BACKEND="${BACKEND:-postgres}"
DURATION="${DURATION:-10}"
CONNECTIONS="${CONNECTIONS:-32}"
THREADS="${THREADS:-2}"
PORT="${PORT:-15080}"

command -v wrk >/dev/null 2>&1 || apt_install wrk
cargo build --release --bin aurora --quiet
BIN="$CARGO_TARGET_DIR/release/aurora"

work=$(mktemp -d)
env_args=(HTTP_PORT="$PORT" AURORA_DATA_DIR="$work/data" RUST_LOG=warn)
if [ "$BACKEND" = postgres ]; then
  ensure_postgres
  ensure_redis
  db="aurora_bench_$$"
  psql -q -h 127.0.0.1 -U postgres -d postgres -c "CREATE DATABASE $db" >/dev/null
  # Loopback: no TLS between node and database (sslmode=prefer would encrypt every message).
  env_args+=(DATABASE_URL="postgres://postgres@127.0.0.1:5432/$db?sslmode=disable" REDIS_URL="redis://127.0.0.1:6379/0")
fi

cleanup() {
  [ -n "${node_pid:-}" ] && kill -TERM "$node_pid" 2>/dev/null && wait "$node_pid" 2>/dev/null || true
  [ "$BACKEND" = postgres ] && psql -q -h 127.0.0.1 -U postgres -d postgres -c "DROP DATABASE IF EXISTS $db WITH (FORCE)" >/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

env "${env_args[@]}" "$BIN" serve > "$work/node.log" 2>&1 &
node_pid=$!
base="http://127.0.0.1:$PORT"
for _ in $(seq 1 100); do curl -sf "$base/health" >/dev/null && break; sleep 0.1; done

token=$(curl -sf -H 'content-type: application/json' -d '{"email":"bench@acme.io","password":"correct horse battery","org_name":"Bench"}' \
  "$base/api/auth/register" | python3 -c 'import json,sys; print(json.load(sys.stdin)["token"])')
for i in $(seq 1 200); do
  curl -sf -o /dev/null -H 'content-type: application/json' -H "authorization: Bearer $token" -d "{\"title\":\"session $i\"}" "$base/chat_api/sessions"
done
rows=$(curl -sf -H "authorization: Bearer $token" "$base/chat_api/sessions?limit=50" | python3 -c 'import json,sys; print(len(json.load(sys.stdin)["sessions"]))')
[ "$rows" = 50 ] || { echo "expected 50 rows, got $rows" >&2; exit 1; }
# What autovacuum would do shortly after the inserts: give the planner row counts.
[ "$BACKEND" = postgres ] && psql -q -h 127.0.0.1 -U postgres -d "$db" -c "ANALYZE" >/dev/null

echo "== backend=$BACKEND wrk -t$THREADS -c$CONNECTIONS -d${DURATION}s =="
echo "-- GET /health"
wrk -t"$THREADS" -c"$CONNECTIONS" -d"${DURATION}s" --latency "$base/health"
echo "-- GET /chat_api/sessions?limit=50 (50 newest of 200 rows, authenticated)"
wrk -t"$THREADS" -c"$CONNECTIONS" -d"${DURATION}s" --latency -H "authorization: Bearer $token" "$base/chat_api/sessions?limit=50"
