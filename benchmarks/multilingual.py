"""Do clusters follow topics or languages? SIB-200 (the same 1,004 sentences in 16 languages, 7 topics),
embedded with the bundled model, clustered by k-means with and without language-mean centring
(convoscope.language_centering), scored against the topics and against the languages.

    python benchmarks/multilingual.py [--data ../shared/data/sib200/sib200.jsonl] [--k 7 30 160]

Prints, per k and variant: NMI against the topics and against the languages, the mean per-language
accuracy (each cluster labelled with its majority topic) and its spread (best minus worst language),
over all languages and over the 13 the embedder was trained on (USE multilingual v3 does not cover
Hindi, Vietnamese or Indonesian). Embeddings go through the vector cache, so a second run is quick.
"""

from __future__ import annotations

import argparse
import json
import time
from collections import Counter
from pathlib import Path

import numpy as np
from sklearn.metrics import normalized_mutual_info_score as nmi

from convoscope.config import Config
from convoscope.embedders import UniversalSentenceEncoder, VectorCache
from convoscope.kmeans import kmeans
from convoscope.language_centering import centre_rows, language_offsets
from convoscope.stages.embed import embed_texts

USE_LANGUAGES = {"ar", "zh", "en", "de", "fr", "it", "pt", "es", "ja", "ko", "ru", "pl", "tr", "nl", "th"}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", default=str(Path(__file__).resolve().parents[2] / "shared/data/sib200/sib200.jsonl"))
    parser.add_argument("--k", type=int, nargs="+", default=[7, 30, 160])
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    rows = [json.loads(line) for line in open(args.data, encoding="utf-8")]
    texts = [r["text"] for r in rows]
    gold = np.array([r["label"] for r in rows])
    language = np.array([r["language"] for r in rows])
    started = time.perf_counter()
    model = UniversalSentenceEncoder()
    cache = VectorCache(Config().llm.resolved_cache_dir(), model.name)
    parts = [embed_texts(model, texts[i:i + 256], cache)[0] for i in range(0, len(texts), 256)]
    cache.close()
    vectors = np.vstack(parts).astype(np.float32)
    print(f"{len(texts):,} sentences, {len(set(language))} languages, {len(set(gold))} topics; embedded in {time.perf_counter() - started:.0f} s")
    centred = centre_rows(vectors, language.tolist(), language_offsets(vectors, language.tolist(), min_rows=50))
    print("k    variant   NMI(topic) NMI(language)  accuracy  spread | trained-on languages: accuracy spread")
    for k in args.k:
        for name, data in (("raw", vectors), ("centred", centred)):
            labels, _ = kmeans(data, k, args.seed)
            majority = {c: Counter(gold[labels == c]).most_common(1)[0][0] for c in set(labels.tolist())}
            predicted = np.array([majority[c] for c in labels])
            accuracy = {lang: float((predicted[language == lang] == gold[language == lang]).mean()) for lang in sorted(set(language))}
            trained = {lang: a for lang, a in accuracy.items() if lang in USE_LANGUAGES}
            print(f"{k:<4d} {name:8s}  {nmi(gold, labels):10.3f} {nmi(language, labels):13.3f}  {np.mean(list(accuracy.values())):8.3f}"
                  f"  {100 * (max(accuracy.values()) - min(accuracy.values())):5.1f} |"
                  f" {np.mean(list(trained.values())):8.3f} {100 * (max(trained.values()) - min(trained.values())):5.1f}")


if __name__ == "__main__":
    main()
