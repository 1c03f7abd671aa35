"""Stage 8: the map. UMAP of the conversation embeddings to 2-D (cosine, 15 neighbours, min_dist 0,
as in the paper); on large data it is fitted on a seeded sample and the rest are transformed."""

from __future__ import annotations

import time
import warnings

import numpy as np
import pyarrow as pa

from convoscope.context import RunContext
from convoscope.store import fingerprint

STAGE = "map"


def project_2d(vectors: np.ndarray, n_neighbors: int, min_dist: float, fit_sample: int, seed: int) -> np.ndarray:
    n = len(vectors)
    if n < 4:
        return np.zeros((n, 2), dtype=np.float32)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import umap

        reducer = umap.UMAP(n_neighbors=min(n_neighbors, n - 1), min_dist=min_dist, metric="cosine", random_state=seed, n_components=2,
                            init="spectral" if n > n_neighbors + 2 else "random", low_memory=True)
        if n <= fit_sample:
            coords = reducer.fit_transform(vectors)
        else:
            sample = np.random.default_rng(seed).choice(n, size=fit_sample, replace=False)
            reducer.fit(vectors[sample])
            coords = np.empty((n, 2), dtype=np.float32)
            for start in range(0, n, 20000):
                coords[start : start + 20000] = reducer.transform(vectors[start : start + 20000])
    return np.asarray(coords, dtype=np.float32)


def run_map(ctx: RunContext, upstream: str) -> str:
    m = ctx.config.map
    fp = fingerprint(STAGE, upstream, m.model_dump(), ctx.config.seed)
    if ctx.store.stage_complete(STAGE, fp):
        return fp
    started = time.perf_counter()
    vectors = np.asarray(ctx.store.read_array("embeddings", mmap=False))
    with ctx.console.status(f"UMAP map of {len(vectors):,} conversations"):
        coords = project_2d(vectors, m.n_neighbors, m.min_dist, m.fit_sample, ctx.config.seed)
    conv_ids = ctx.store.read_table("facets", columns=["conv_id"]).column("conv_id")
    table = pa.table({"conv_id": conv_ids, "x": pa.array(coords[:, 0]), "y": pa.array(coords[:, 1])})
    artifact = ctx.store.write_table("map", table)
    ctx.store.mark_complete(STAGE, fp, [artifact], seconds=time.perf_counter() - started, fitted_on=min(len(vectors), m.fit_sample))
    return fp
