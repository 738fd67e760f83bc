"""Reference vectors for the Rust embedding test (models/tests/embeddings.rs).

Encodes a fixed set of sentences with the Python sentence-transformers package (PyTorch, CPU)
from the same model files the node loads, and writes them as JSON. Run once when the model or
the sentences change:

    python -m venv /tmp/st && /tmp/st/bin/pip install sentence-transformers
    /tmp/st/bin/python scripts/reference_vectors.py "$EMBEDDING_MODEL_DIR" \
        models/tests/fixtures/minilm_reference.json
"""

import json
import sys

from sentence_transformers import SentenceTransformer, models

SENTENCES = [
    "The payment service is returning 502 errors since the last deploy.",
    "Restart the web pods in the production namespace.",
    "How do I roll back a failed Kubernetes deployment?",
    "Disk usage on the database primary is above 90 percent.",
    "CPU throttling on the checkout containers spiked at midnight.",
    "The certificate for api.example.com expires in three days.",
    "Redis memory is close to maxmemory and keys are being evicted.",
    "Latency of the search endpoint doubled after the index rebuild.",
    "Scale the worker deployment to five replicas.",
    "Terraform plan shows the load balancer will be replaced.",
    "An on-call engineer acknowledged the PagerDuty incident.",
    "Postgres replication lag exceeded thirty seconds.",
    "The S3 bucket policy denies access to the backup role.",
    "Node pool upgrade is stuck waiting for pods to drain.",
    "OOMKilled containers keep restarting in the batch job.",
    "DNS resolution fails intermittently inside the cluster.",
    "hello",
    "Runbook: if the queue depth alarm fires, check consumer lag first, then the broker's disk.",
    "Ünïcödé and emoji 🚀 survive tokenisation.",
    " ".join(["The incident timeline is long."] * 60),  # over 256 tokens: truncated
]


def main() -> None:
    model_dir, out = sys.argv[1], sys.argv[2]
    # The directory holds only the transformer files: build the sentence-transformers pipeline
    # all-MiniLM-L6-v2 uses (mean pooling, normalisation, 256-token inputs) explicitly.
    word = models.Transformer(model_dir, max_seq_length=256)
    pooling = models.Pooling(word.get_word_embedding_dimension(), pooling_mode="mean")
    model = SentenceTransformer(modules=[word, pooling, models.Normalize()], device="cpu")
    vectors = model.encode(SENTENCES, batch_size=8, convert_to_numpy=True)
    with open(out, "w", encoding="utf-8") as f:
        json.dump(
            {
                "model": "sentence-transformers/all-MiniLM-L6-v2",
                "sentences": SENTENCES,
                "vectors": [[round(float(x), 7) for x in v] for v in vectors],
            },
            f,
        )


if __name__ == "__main__":
    main()
