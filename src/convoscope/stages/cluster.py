"""Stage 4: base clusters by k-means over the embeddings (the paper found k-means better than HDBSCAN
and agglomerative clustering). k follows the data size: conversations / `conversations_per_cluster`
(the paper costs its pipeline at about 100 conversations per cluster), bounded by the settings."""

from __future__ import annotations

import time

import numpy as np
import pyarrow as pa
from sklearn.cluster import KMeans, MiniBatchKMeans

from convoscope.config import ClusterSettings
from convoscope.context import RunContext
from convoscope.store import fingerprint

STAGE = "cluster"
# Above this many points full k-means gets slow on two cores; mini-batch k-means is within a point of it.
FULL_KMEANS_MAX_POINTS = 30_000


def choose_k(n: int, settings: ClusterSettings) -> int:
    k = round(n / settings.conversations_per_cluster)
    k = max(settings.min_clusters, min(settings.max_clusters, k))
    return max(1, min(k, n))


def kmeans(vectors: np.ndarray, k: int, seed: int, sample_weight: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Labels and L2-normalised centroids (spherical k-means on unit vectors).

    Exact duplicate vectors (frequent: many summaries are word for word the same) are clustered once,
    weighted by their count: faster, and it removes the ties that make k-means results depend on
    thread scheduling, so the same input always gives the same clusters (and cache hits on rerun)."""
    unique, inverse, counts = np.unique(vectors, axis=0, return_inverse=True, return_counts=True)
    inverse = inverse.reshape(-1)
    weights = counts.astype(np.float64)
    if sample_weight is not None:
        weights = np.bincount(inverse, weights=np.asarray(sample_weight, dtype=np.float64), minlength=len(unique))
    k = max(1, min(k, len(unique)))
    if k == len(unique):
        labels = np.arange(len(unique))
        centroids = unique.astype(np.float32)
    else:
        if len(unique) > FULL_KMEANS_MAX_POINTS:
            # one initialisation: at 100,000 points and k=1,000 each costs about 20 s on 2 cores
            model = MiniBatchKMeans(n_clusters=k, random_state=seed, n_init=1, batch_size=max(4096, 3 * k), max_no_improvement=20)
        else:
            model = KMeans(n_clusters=k, random_state=seed, n_init=3)
        labels = model.fit_predict(unique, sample_weight=weights)
        centroids = model.cluster_centers_.astype(np.float32)
    centroids /= np.maximum(np.linalg.norm(centroids, axis=1, keepdims=True), 1e-12)
    # k-means can leave a cluster empty; renumber so every label in 0..k'-1 is used
    used, labels = np.unique(labels, return_inverse=True)
    return labels.reshape(-1)[inverse].astype(np.int64), centroids[used]


def run_cluster(ctx: RunContext, upstream: str) -> str:
    config = ctx.config
    fp = fingerprint(STAGE, upstream, config.cluster.model_dump(), config.seed)
    if ctx.store.stage_complete(STAGE, fp):
        return fp
    started = time.perf_counter()
    vectors = np.asarray(ctx.store.read_array("embeddings", mmap=False))
    k = choose_k(len(vectors), config.cluster)
    with ctx.console.status(f"k-means: {len(vectors):,} conversations into {k} base clusters"):
        labels, centroids = kmeans(vectors, k, config.seed)
    conv_ids = ctx.store.read_table("facets", columns=["conv_id"]).column("conv_id")
    table = pa.table({"conv_id": conv_ids, "cluster": pa.array(labels, type=pa.int32())})
    artifacts = [ctx.store.write_table("base_assignments", table), ctx.store.write_array("base_centroids", centroids)]
    ctx.store.mark_complete(STAGE, fp, artifacts, seconds=time.perf_counter() - started, k=int(k),
                            rule=f"k = conversations / {config.cluster.conversations_per_cluster}, within [{config.cluster.min_clusters}, {config.cluster.max_clusters}]")
    return fp
