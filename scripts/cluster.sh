#!/usr/bin/env bash
# Runs a three-node cluster on this machine with one command: nodes node1..node3 on 127.0.0.1
# (HTTP 5081-5083, WebSocket 5007-5009, cluster 7101-7103), sharing PostgreSQL (database
# `aurora_cluster`, created if missing) and Redis, which are started when they are down.
# Ctrl-C stops all three (each drains its turns first). Logs: data/cluster/nodeN.log.
#
# The LLM provider and the rest of the configuration come from the environment as for one
# node (LLM_PROVIDER, LLM_BASE_URL, LLM_API_KEY, LLM_MODEL, ...). CLUSTER_COOKIE and SECRET_KEY
# are generated for the run when unset, the TLS certificates once (data/cluster/tls).
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=services.sh
source scripts/services.sh
ensure_postgres
ensure_redis
db="${AURORA_CLUSTER_DB:-aurora_cluster}"
if ! psql -h 127.0.0.1 -U postgres -tAc "SELECT 1 FROM pg_database WHERE datname = '${db}'" | grep -q 1; then
  psql -h 127.0.0.1 -U postgres -qc "CREATE DATABASE ${db}"
fi
export DATABASE_URL="${DATABASE_URL:-postgres://postgres@127.0.0.1:5432/${db}}"
export REDIS_URL="${REDIS_URL:-redis://127.0.0.1:6379/0}"
export SECRET_KEY="${SECRET_KEY:-$(head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n')}"
cookie="${CLUSTER_COOKIE:-$(head -c 16 /dev/urandom | od -An -tx1 | tr -d ' \n')}"
unset CLUSTER_COOKIE CLUSTER_PORT CLUSTER_SEEDS NODE_NAME HTTP_PORT WS_PORT AURORA_DATA_DIR

# Cluster links are mutual TLS. Unless given, a CA and one certificate for 127.0.0.1 (shared by
# the three local nodes) are made with openssl, once, under data/cluster/tls.
if [ -z "${CLUSTER_TLS_CERT:-}" ]; then
  tls=data/cluster/tls
  mkdir -p "${tls}"
  if [ ! -f "${tls}/node.pem" ]; then
    openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 3650 \
      -subj "/CN=aurora cluster CA" -keyout "${tls}/ca.key" -out "${tls}/ca.pem" 2>/dev/null
    openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj "/CN=aurora node" \
      -keyout "${tls}/node.key" -out "${tls}/node.csr" 2>/dev/null
    printf 'subjectAltName=IP:127.0.0.1,DNS:localhost\n' > "${tls}/ext.cnf"
    openssl x509 -req -in "${tls}/node.csr" -CA "${tls}/ca.pem" -CAkey "${tls}/ca.key" \
      -CAcreateserial -days 3650 -extfile "${tls}/ext.cnf" -out "${tls}/node.pem" 2>/dev/null
    chmod 600 "${tls}"/*.key
  fi
  export CLUSTER_TLS_CERT="${tls}/node.pem" CLUSTER_TLS_KEY="${tls}/node.key" CLUSTER_TLS_CA="${tls}/ca.pem"
fi

cargo build --release --bin aurora
bin="${CARGO_TARGET_DIR:-target}/release/aurora"
mkdir -p data/cluster
pids=()
stop() {
  echo "[aurora] stopping the cluster"
  kill -TERM "${pids[@]}" 2>/dev/null || true
  wait "${pids[@]}" 2>/dev/null || true
}
trap stop INT TERM EXIT
for i in 1 2 3; do
  seeds=()
  for j in 1 2 3; do
    [ "$i" = "$j" ] || seeds+=("127.0.0.1:710${j}")
  done
  HTTP_PORT="508${i}" WS_PORT="500$((6 + i))" AURORA_DATA_DIR="data/cluster/node${i}" \
    "${bin}" serve --node-name "node${i}" --cluster-port "710${i}" \
    --seeds "$(IFS=,; echo "${seeds[*]}")" --cookie "${cookie}" \
    >"data/cluster/node${i}.log" 2>&1 &
  pids+=($!)
done
for _ in $(seq 1 300); do
  members="$(curl -fs localhost:5081/health 2>/dev/null | grep -o '"members":\[[^]]*\]' || true)"
  if [ "${members}" = '"members":["node1","node2","node3"]' ]; then
    echo "[aurora] cluster up: ${members}"
    echo "[aurora] HTTP  http://127.0.0.1:5081  http://127.0.0.1:5082  http://127.0.0.1:5083"
    echo "[aurora] WS    ws://127.0.0.1:5007    ws://127.0.0.1:5008    ws://127.0.0.1:5009"
    echo "[aurora] admin console http://127.0.0.1:5081/admin; logs in data/cluster/"
    wait "${pids[@]}"
    exit 0
  fi
  for pid in "${pids[@]}"; do
    kill -0 "${pid}" 2>/dev/null || { echo "[aurora] a node exited; see data/cluster/*.log" >&2; exit 1; }
  done
  sleep 0.2
done
echo "[aurora] the nodes did not form a cluster within 60 s; see data/cluster/*.log" >&2
exit 1
