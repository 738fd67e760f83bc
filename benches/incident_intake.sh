#!/usr/bin/env bash
# Alert intake on PostgreSQL: the node against the original stack's shape (Flask under gunicorn,
# one Celery task per alert on Redis, psycopg2), driven by the same load generator
# (benches/incident_intake.rs) in the same run. See its header for the two phases.
#
#   benches/incident_intake.sh                  # both, in turn
#   ONLY=node benches/incident_intake.sh        # or ONLY=anchor
#   EMBEDDINGS=off benches/incident_intake.sh   # the node without text similarity
#
# Bounded: every phase has a count and a time limit (TIMEOUT_SECS for the whole generator run).
# Anchor tuning (the original's production shape on this machine): GUNICORN_WORKERS (4) sync
# workers, CELERY_CONCURRENCY (4) prefork children.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/services.sh

ONLY="${ONLY:-}"
EMBEDDINGS="${EMBEDDINGS:-on}"
NODE_PORT="${NODE_PORT:-15090}"
ANCHOR_PORT="${ANCHOR_PORT:-15091}"
GUNICORN_WORKERS="${GUNICORN_WORKERS:-4}"
CELERY_CONCURRENCY="${CELERY_CONCURRENCY:-4}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$PWD/target}"

ensure_postgres
ensure_redis
cargo build --release --bin aurora --quiet
cargo bench --bench incident_intake --no-run --quiet 2>/dev/null
GEN=$(ls -t "$CARGO_TARGET_DIR"/release/deps/incident_intake-* | grep -v '\.d$' | head -1)
BIN="$CARGO_TARGET_DIR/release/aurora"

work=$(mktemp -d)
suffix="$$"
cleanup() {
  for pid in ${node_pid:-} ${gunicorn_pid:-} ${celery_pid:-}; do
    kill -TERM "$pid" 2>/dev/null || true
  done
  wait 2>/dev/null || true
  for db in "aurora_intake_$suffix" "intake_anchor_$suffix"; do
    psql -q -h 127.0.0.1 -U postgres -d postgres -c "DROP DATABASE IF EXISTS $db WITH (FORCE)" >/dev/null 2>&1 || true
  done
  rm -rf "$work"
}
trap cleanup EXIT

wait_up() {
  for _ in $(seq 1 300); do curl -sf "$1/health" >/dev/null && return 0; sleep 0.1; done
  echo "$1 did not come up" >&2
  return 1
}

echo "cpu: $(lscpu | sed -n 's/^Model name: *//p' | head -1), $(nproc) cores"

if [ "$ONLY" != anchor ]; then
  db="aurora_intake_$suffix"
  psql -q -h 127.0.0.1 -U postgres -d postgres -c "CREATE DATABASE $db" >/dev/null
  env_args=(HTTP_PORT="$NODE_PORT" WS_PORT=0 AURORA_DATA_DIR="$work/node" RUST_LOG=warn
    AURORA_ALLOW_REGISTRATION=true
    DATABASE_URL="postgres://postgres@127.0.0.1:5432/$db?sslmode=disable"
    REDIS_URL="redis://127.0.0.1:6379/13")
  if [ "$EMBEDDINGS" = on ]; then
    ensure_model
    env_args+=(EMBEDDING_MODEL_DIR="$PWD/.models/all-MiniLM-L6-v2" HF_HUB_OFFLINE=1)
  fi
  env "${env_args[@]}" "$BIN" serve > "$work/node.log" 2>&1 &
  node_pid=$!
  base="http://127.0.0.1:$NODE_PORT"
  wait_up "$base"
  bearer=$(curl -sf -H 'content-type: application/json' \
    -d '{"email":"bench@intake.io","password":"correct horse battery","org_name":"Intake"}' \
    "$base/api/auth/register" | python3 -c 'import json,sys; print(json.load(sys.stdin)["token"])')
  hook=$(curl -sf -H 'content-type: application/json' -H "authorization: Bearer $bearer" \
    -d '{"name":"bench"}' "$base/api/org/webhooks" | python3 -c 'import json,sys; print(json.load(sys.stdin)["token"])')
  LABEL=node BASE_URL="$base" WEBHOOK_TOKEN="$hook" BEARER_TOKEN="$bearer" "$GEN" --bench
  echo "node peak RSS: $(grep VmHWM /proc/$node_pid/status | awk '{print $2, $3}')"
  kill -TERM "$node_pid"; wait "$node_pid" 2>/dev/null || true; node_pid=
fi

if [ "$ONLY" != node ]; then
  venv=.bench/intake-venv
  if [ ! -x "$venv/bin/celery" ]; then
    python3 -m venv "$venv"
    "$venv/bin/pip" install -q -r benches/anchors/intake/requirements.txt
  fi
  db="intake_anchor_$suffix"
  psql -q -h 127.0.0.1 -U postgres -d postgres -c "CREATE DATABASE $db" >/dev/null
  psql -q -h 127.0.0.1 -U postgres -d "$db" -f benches/anchors/intake/schema.sql >/dev/null
  token="anchor-webhook-$suffix"
  hash=$(printf '%s' "$token" | sha256sum | cut -d' ' -f1)
  psql -q -h 127.0.0.1 -U postgres -d "$db" \
    -c "INSERT INTO webhook_tokens (token_hash, org_id) VALUES ('$hash', '00000000-0000-0000-0000-000000000001')" >/dev/null
  export ANCHOR_DSN="postgresql://postgres@127.0.0.1:5432/$db?sslmode=disable"
  export ANCHOR_REDIS_URL="redis://127.0.0.1:6379/12"
  export ANCHOR_FEED_PREFIX="intake-anchor-$suffix:feed:"
  redis-cli -n 12 FLUSHDB >/dev/null
  (cd benches/anchors/intake && exec "../../../$venv/bin/celery" -A tasks worker \
    --concurrency "$CELERY_CONCURRENCY" --prefetch-multiplier 4 -O fair --loglevel WARNING) \
    > "$work/celery.log" 2>&1 &
  celery_pid=$!
  # gthread: the feed's SSE requests hold a thread, not a whole worker.
  (cd benches/anchors/intake && exec "../../../$venv/bin/gunicorn" -w "$GUNICORN_WORKERS" \
    -k gthread --threads 8 -b "127.0.0.1:$ANCHOR_PORT" --log-level warning app:app) \
    > "$work/gunicorn.log" 2>&1 &
  gunicorn_pid=$!
  base="http://127.0.0.1:$ANCHOR_PORT"
  wait_up "$base"
  LABEL=anchor BASE_URL="$base" WEBHOOK_TOKEN="$token" BEARER_TOKEN=anchor-bearer-token "$GEN" --bench \
    || { tail -20 "$work/celery.log" "$work/gunicorn.log"; exit 1; }
fi
