"""The Python anchor of the embedding benchmark (benches/embeddings.sh): sentence-transformers
with PyTorch on the CPU, same model files, same sentences, batch 32. Prints sentences per
second and writes its vectors for the Rust side's cosine check.

    python scripts/bench_embeddings.py MODEL_DIR SENTENCES_FILE VECTORS_OUT
"""

import json
import sys
import time

from sentence_transformers import SentenceTransformer, models


def main() -> None:
    model_dir, sentences_file, out = sys.argv[1], sys.argv[2], sys.argv[3]
    sentences = [line.rstrip("\n") for line in open(sentences_file, encoding="utf-8")]
    word = models.Transformer(model_dir, max_seq_length=256)
    pooling = models.Pooling(word.get_word_embedding_dimension(), pooling_mode="mean")
    model = SentenceTransformer(modules=[word, pooling, models.Normalize()], device="cpu")
    model.encode(sentences[:64], batch_size=32)  # warm-up
    best = 0.0
    for _ in range(3):
        start = time.perf_counter()
        vectors = model.encode(sentences, batch_size=32, convert_to_numpy=True)
        rate = len(sentences) / (time.perf_counter() - start)
        best = max(best, rate)
    print(f"python sentence-transformers: {len(sentences)} sentences, batch 32: {best:.0f} sentences/s (best of 3)")
    with open(out, "w", encoding="utf-8") as f:
        json.dump([[float(x) for x in v] for v in vectors], f)


if __name__ == "__main__":
    main()
