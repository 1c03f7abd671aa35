"""Cluster quality of the scale shortcuts (issue 12 part 1), against gold intents, on a finished run.

    python benchmarks/scale_quality.py float16 RUN_DIR LABELLED.jsonl [--seeds 0 1 2]
    python benchmarks/scale_quality.py sample RUN_DIR            # a benchmarks/pipeline.py --keep run
    python benchmarks/scale_quality.py map RUN_DIR LABELLED.jsonl [--epochs 500 200] [--fit-sample 10000]
    python benchmarks/scale_quality.py cells RUN_DIR             # the map's inverted file, any run

`float16`: base-level k-means NMI from the run's embeddings in float32 and rounded to float16
(the artifact's dtype), for a run of a labelled file (`id` and `label` fields, e.g. CLINC150).
`sample`: NMI of k-means fitted on a sample and assigned in blocks (`kmeans_on_sample`) vs k-means
over all rows (`kmeans`), for a run of `benchmarks/pipeline.py` input (each conversation labelled
with the intent of the CLINC150/BANKING77 request it was built from), with CPU seconds.
k = rows / 100, as the cluster stage chooses it.
`map`: the map (`project.project_2d`) of a run of a labelled file with each number of fit epochs: the
share of each point's 10 nearest map neighbours with its gold label, trustworthiness (scikit-learn, 15
neighbours, cosine, on a seeded sample of 2,000 points) and the share of each sampled point's 15 nearest
embedding neighbours that are among its 15 nearest on the map, with CPU seconds (the first variant
includes numba's compilation unless its cache is warm).
`cells`: the map's inverted file (`neighbours.CellIndex`, 100 cells of a seeded 10,000-row sample, 10
searched) with its cells from `coarse_cells` and from scikit-learn k-means (`kmeans.kmeans`): CPU
seconds to build and to search 10,000 other rows, and recall of the exact 15 nearest neighbours.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
from sklearn.metrics import normalized_mutual_info_score

from convoscope.kmeans import kmeans, kmeans_on_sample

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"


def _ids(run: Path) -> list[str]:
    return pq.read_table(run / "facets.parquet", columns=["conv_id"]).column("conv_id").to_pylist()


def float16_check(run: Path, labelled: Path, seeds: list[int]) -> None:
    with open(labelled, encoding="utf-8") as fh:
        gold = {r["id"]: r["label"] for r in map(json.loads, fh)}
    truth = [gold[i] for i in _ids(run)]
    vectors = np.asarray(np.load(run / "embeddings.npy"), dtype=np.float32)
    k = round(len(vectors) / 100)
    for seed in seeds:
        for name, x in (("float32", vectors), ("float16", vectors.astype(np.float16).astype(np.float32))):
            labels, _ = kmeans(x, k, seed)
            print(f"seed {seed} {name}: k {k}, NMI {normalized_mutual_info_score(truth, labels):.4f}", flush=True)


def sample_check(run: Path) -> None:
    texts_labels: list[str] = []
    for name in ("clinc150/clinc150.jsonl", "banking77/banking77.jsonl"):
        with open(SHARED / name, encoding="utf-8") as fh:
            texts_labels.extend(f"{name.split('/')[0]}:{json.loads(line)['label']}" for line in fh)
    truth = [texts_labels[int(i[1:]) % len(texts_labels)] for i in _ids(run)]  # ids are c<i> (benchmarks/pipeline.py)
    vectors = np.load(run / "embeddings.npy", mmap_mode="r")
    k = round(len(vectors) / 100)
    for name in ("sample", "all rows"):
        started = time.process_time()
        if name == "sample":
            labels, centroids = kmeans_on_sample(vectors, k, 0)
        else:
            labels, centroids = kmeans(np.asarray(vectors, dtype=np.float32), k, 0)
        print(f"{name}: k {len(centroids)}, NMI {normalized_mutual_info_score(truth, labels):.4f}, "
              f"{time.process_time() - started:.1f} CPU s", flush=True)


def map_check(run: Path, labelled: Path, epochs: list[int], fit_sample: int, seed: int = 0) -> None:
    from sklearn.manifold import trustworthiness
    from sklearn.neighbors import NearestNeighbors

    from convoscope.neighbours import cosine_knn
    from convoscope.stages.project import project_2d

    with open(labelled, encoding="utf-8") as fh:
        gold = {r["id"]: r["label"] for r in map(json.loads, fh)}
    truth = np.asarray([gold[i] for i in _ids(run)])
    vectors = np.load(run / "embeddings.npy", mmap_mode="r")
    probe = np.sort(np.random.default_rng(seed).choice(len(vectors), size=min(2000, len(vectors)), replace=False))
    high = np.asarray(vectors[probe], dtype=np.float32)
    high_knn = cosine_knn(high, np.asarray(vectors, dtype=np.float32), 16)[0][:, 1:]
    for n_epochs in epochs:
        started = time.process_time()
        coords = project_2d(vectors, 15, 0.0, fit_sample, seed, n_epochs=n_epochs)
        cpu = time.process_time() - started
        near = NearestNeighbors(n_neighbors=16).fit(coords).kneighbors(coords, return_distance=False)
        same = float((truth[near[:, 1:11]] == truth[:, None]).mean())
        kept = float(np.mean([len(set(high_knn[j]) & set(near[i, 1:16])) / 15 for j, i in enumerate(probe)]))
        trust = trustworthiness(high, coords[probe], n_neighbors=15, metric="cosine")
        print(f"fit epochs {n_epochs}: 10-NN same label {same:.4f}, trustworthiness {trust:.4f}, 15-NN kept {kept:.4f}, "
              f"{cpu:.1f} CPU s ({len(vectors):,} points, fitted on {min(fit_sample, len(vectors)):,})", flush=True)


def cells_check(run: Path, seed: int = 0) -> None:
    import convoscope.neighbours as neighbours

    vectors = np.load(run / "embeddings.npy", mmap_mode="r")
    picked = np.random.default_rng(seed).permutation(len(vectors))[:20_000]
    reference = np.asarray(vectors[np.sort(picked[:10_000])], dtype=np.float32)
    queries = np.asarray(vectors[np.sort(picked[10_000:])], dtype=np.float32)
    exact = neighbours.cosine_knn(queries, reference, 15)[0]
    coarse = neighbours.coarse_cells
    try:
        for name, cells in (("coarse_cells", coarse), ("scikit-learn k-means", lambda r, c, s: kmeans(r, c, s))):
            neighbours.coarse_cells = cells
            started = time.process_time()
            index = neighbours.CellIndex(reference, cells=100, probe=10, seed=seed)
            built = time.process_time() - started
            started = time.process_time()
            found = index.search(queries, 15)[0]
            recall = np.mean([len(set(a) & set(b)) / 15 for a, b in zip(found, exact)])
            print(f"{name}: build {built:.1f} CPU s, search {len(queries):,} {time.process_time() - started:.1f} CPU s, "
                  f"recall of the 15 nearest {recall:.4f}", flush=True)
    finally:
        neighbours.coarse_cells = coarse


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("check", choices=["float16", "sample", "map", "cells"])
    parser.add_argument("run", type=Path)
    parser.add_argument("labelled", type=Path, nargs="?")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--epochs", type=int, nargs="+", default=[500, 200], help="map: UMAP fit epochs to compare")
    parser.add_argument("--fit-sample", type=int, default=10_000, help="map: points UMAP is fitted on")
    args = parser.parse_args()
    if args.check == "cells":
        cells_check(args.run)
    elif args.check == "map":
        if args.labelled is None:
            parser.error("map needs the labelled input file")
        map_check(args.run, args.labelled, args.epochs, args.fit_sample)
    elif args.check == "float16":
        if args.labelled is None:
            parser.error("float16 needs the labelled input file")
        float16_check(args.run, args.labelled, args.seeds)
    else:
        sample_check(args.run)


if __name__ == "__main__":
    main()
