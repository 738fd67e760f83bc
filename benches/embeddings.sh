#!/usr/bin/env bash
# Embedding throughput, Rust (candle) against Python (sentence-transformers + PyTorch, CPU), in
# the same run: 1000 generated sentences of about 12 words, batch 32.
#
#   ST_PYTHON=/path/to/venv/bin/python benches/embeddings.sh
#
# ST_PYTHON is a Python with sentence-transformers installed (about 6 GB with torch); without
# it, only the Rust side runs.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/services.sh
ensure_model

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
python3 - "$work/sentences.txt" <<'PY'
import random, sys
random.seed(7)
subjects = ["the api gateway", "our payment service", "the postgres primary", "a worker node", "the redis cache", "the checkout pods", "the ingress controller", "the search cluster"]
verbs = ["reports", "shows", "started returning", "keeps hitting", "is logging", "quietly dropped", "recovered from", "alerted on"]
objects = ["high latency", "timeouts to the database", "memory pressure", "disk usage above ninety percent", "connection resets", "failed health checks", "certificate errors", "throttled requests"]
tails = ["after the deploy this morning", "during the nightly batch", "since the config change", "on every third request", "in the eu region only", "while traffic was low"]
with open(sys.argv[1], "w") as f:
    for _ in range(1000):
        f.write(f"{random.choice(subjects)} {random.choice(verbs)} {random.choice(objects)} {random.choice(tails)}\n")
PY
if [ -n "${ST_PYTHON:-}" ]; then
  "$ST_PYTHON" scripts/bench_embeddings.py "$EMBEDDING_MODEL_DIR" "$work/sentences.txt" "$work/python.json" 2>/dev/null
  export REFERENCE="$work/python.json"
fi
SENTENCES="$work/sentences.txt" cargo bench --quiet --bench embeddings
