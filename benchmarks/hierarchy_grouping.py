"""How well does the extractive hierarchy's top level recover known top categories, over several seeds?

    python benchmarks/hierarchy_grouping.py RUN_DIR --field parent_label [--base-field label] [--seeds 0,1,2,3,4]

RUN_DIR is a finished extractive run on labelled data (e.g. from `convoscope eval reconstruction
../shared/data/clinc150/clinc150.jsonl --label-field label --parent-field parent_label --out runs/clinc`);
its embeddings and its base-cluster count are reused. For each seed it clusters the embeddings again
and groups the base clusters into the run's top-level count three ways:

- ours: our k-means, then Ward over [centroid, neighbour-link shares] (what the pipeline does),
- centroids only: our k-means, then Ward over the unit centroids (the previous method),
- baseline: scikit-learn KMeans with its defaults, then Ward over its raw centroids.

It prints NMI and purity against --field for every seed, their means, spread and difference to the
baseline: one seed can favour either method by about 0.03 NMI, so compare means. With --base-field it also scores the base
clusters (ours: k-means over distinct vectors, 3 initialisations; baseline: KMeans defaults).
"""

from __future__ import annotations

import argparse
import time

import numpy as np
from sklearn.cluster import KMeans
from sklearn.metrics import normalized_mutual_info_score

from convoscope.kmeans import kmeans
from convoscope.stages.hierarchy import neighbour_links, ward_cuts
from convoscope.eval.common import gold_labels, purity
from convoscope.store import RunStore


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run")
    parser.add_argument("--field", required=True, help="metadata field holding the gold top category")
    parser.add_argument("--base-field", help="metadata field holding the gold fine label, to score the base level too")
    parser.add_argument("--ignore", help="leave conversations with this gold top value out of the scores (e.g. CLINC150's 'oos')")
    parser.add_argument("--seeds", default="0,1,2,3,4")
    args = parser.parse_args()
    store = RunStore(args.run)
    gold = gold_labels(store, args.field).astype(str)
    scored = gold != args.ignore if args.ignore else np.ones(len(gold), dtype=bool)  # clustering uses everything
    vectors = np.asarray(store.read_array("embeddings", mmap=False), dtype=np.float32)
    hierarchy = store.read_table("hierarchy", columns=["level"]).column("level").to_numpy()
    k = int((hierarchy == hierarchy.max()).sum())
    top = int((hierarchy == 0).sum())
    print(f"{args.run}: {len(vectors):,} conversations, base k = {k}, top level = {top} clusters, gold = {args.field} "
          f"({len(set(gold[scored].tolist()))} classes, {int(scored.sum()):,} conversations scored)")
    results: dict[str, list[tuple[float, float]]] = {"ours": [], "centroids only": [], "baseline": []}
    fine = gold_labels(store, args.base_field).astype(str) if args.base_field else None
    base_results: dict[str, list[tuple[float, float]]] = {"ours": [], "baseline": []}
    for seed in (int(s) for s in args.seeds.split(",")):
        started = time.perf_counter()
        labels, centroids = kmeans(vectors, k, seed)
        link_started = time.perf_counter()
        links = neighbour_links(vectors, labels, centroids)
        link_seconds = time.perf_counter() - link_started
        grouped = {"ours": ward_cuts(centroids, [top], links)[0][labels], "centroids only": ward_cuts(centroids, [top])[0][labels]}
        plain = KMeans(n_clusters=k, random_state=seed).fit(vectors)
        grouped["baseline"] = ward_cuts(plain.cluster_centers_.astype(np.float64), [top])[0][plain.labels_]
        line = []
        for name, predicted in grouped.items():
            score = (normalized_mutual_info_score(gold[scored], predicted[scored]), purity(gold[scored], predicted[scored]))
            results[name].append(score)
            line.append(f"{name} {score[0]:.3f}/{score[1]:.3f}")
        if fine is not None:
            for name, predicted in (("ours", labels), ("baseline", plain.labels_)):
                score = (normalized_mutual_info_score(fine[scored], predicted[scored]), purity(fine[scored], predicted[scored]))
                base_results[name].append(score)
                line.append(f"base {name} {score[0]:.3f}/{score[1]:.3f}")
        print(f"seed {seed}: NMI/purity  " + "  ".join(line) + f"  (neighbour links {link_seconds:.1f} s, seed {time.perf_counter() - started:.0f} s)", flush=True)
    print(f"mean over seeds (NMI / purity; NMI standard deviation, lowest; NMI minus the baseline's), top level vs {args.field}:")
    baseline = np.mean([s[0] for s in results["baseline"]])
    for name, scores in results.items():
        nmi, pur = np.mean(scores, axis=0)
        print(f"  {name:15s} {nmi:.3f} / {pur:.3f}; sd {np.std([s[0] for s in scores]):.3f}, lowest {min(s[0] for s in scores):.3f}; "
              f"{nmi - baseline:+.3f}")
    if fine is None:
        return
    print(f"base level vs {args.base_field}:")
    for name, scores in base_results.items():
        nmi, pur = np.mean(scores, axis=0)
        print(f"  {name:15s} {nmi:.3f} / {pur:.3f}; lowest {min(s[0] for s in scores):.3f}")


if __name__ == "__main__":
    main()
