"""Spherical k-means on unit vectors, shared by the cluster stage (base clusters), the hierarchy
(neighbourhoods, parent candidates) and the benchmarks."""

from __future__ import annotations

import numpy as np
from sklearn.cluster import KMeans, MiniBatchKMeans

# Above this many points full k-means gets slow on two cores; mini-batch k-means is within a point of it.
FULL_KMEANS_MAX_POINTS = 30_000



def kmeans(vectors: np.ndarray, k: int, seed: int, sample_weight: np.ndarray | None = None,
           max_steps: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Labels and L2-normalised centroids (spherical k-means on unit vectors). `max_steps` bounds the
    mini-batch steps above FULL_KMEANS_MAX_POINTS (and seeds k-means++ on 3 x k points instead of 3 x
    the batch): each costs batch x k dot products, which at k = 5,000 is seconds.

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
            batch = max(4096, 3 * k)
            bounded = {} if max_steps is None else {"max_iter": max(1, max_steps * batch // len(unique)),
                                                     "init_size": min(len(unique), max(3 * k, 1024))}
            model = MiniBatchKMeans(n_clusters=k, random_state=seed, n_init=1, batch_size=batch, max_no_improvement=20, **bounded)
        else:
            model = KMeans(n_clusters=k, random_state=seed, n_init=3)
        labels = model.fit_predict(unique, sample_weight=weights)
        centroids = model.cluster_centers_.astype(np.float32)
    centroids /= np.maximum(np.linalg.norm(centroids, axis=1, keepdims=True), 1e-12)
    # k-means can leave a cluster empty; renumber so every label in 0..k'-1 is used
    used, labels = np.unique(labels, return_inverse=True)
    return labels.reshape(-1)[inverse].astype(np.int64), centroids[used]


# Rows k-means is fitted on when there are more (at least this many, and 20 per centroid): the rest are
# assigned to the fitted centroids block by block. faiss samples at most 256 points per centroid for the
# same reason. The fit takes at most FIT_STEPS mini-batch steps (about 40 GFLOP each at k = 5,000), so its
# cost stays below the assignment's (n x k dot products). Quality at 100,000: docs/benchmarks.md.
FIT_SAMPLE_ROWS = 50_000
FIT_ROWS_PER_CENTROID = 20
FIT_STEPS = 40
ASSIGN_BLOCK_ROWS = 16_384


def assign_blocks(vectors: np.ndarray, centroids: np.ndarray, block: int = ASSIGN_BLOCK_ROWS) -> np.ndarray:
    """Index of each row's nearest unit centroid (largest dot product), computed block by block, so
    `vectors` may be a float16 memory map of any length: memory is one float32 block and its similarities."""
    centroids_t = np.ascontiguousarray(np.asarray(centroids, dtype=np.float32).T)
    labels = np.empty(len(vectors), dtype=np.int64)
    for start in range(0, len(vectors), block):
        rows = np.asarray(vectors[start:start + block], dtype=np.float32)
        labels[start:start + len(rows)] = np.argmax(rows @ centroids_t, axis=1)
    return labels


def kmeans_on_sample(vectors: np.ndarray, k: int, seed: int, fit_rows: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """`kmeans` for any number of rows (a float16 memory map included): up to `fit_rows` rows (default:
    FIT_SAMPLE_ROWS or FIT_ROWS_PER_CENTROID x k, the larger) it is `kmeans` itself; above, `kmeans` is
    fitted on a seeded sample of `fit_rows` rows in at most FIT_STEPS steps, and every row is then
    assigned to its nearest fitted centroid (`assign_blocks`). Same labels and centroids for the same
    input and seed."""
    n = len(vectors)
    if fit_rows is None:
        fit_rows = max(FIT_SAMPLE_ROWS, FIT_ROWS_PER_CENTROID * k)
    if n <= fit_rows:
        return kmeans(np.asarray(vectors, dtype=np.float32), k, seed)
    sample = np.sort(np.random.default_rng(seed).choice(n, size=fit_rows, replace=False))
    _, centroids = kmeans(np.asarray(vectors[sample], dtype=np.float32), k, seed, max_steps=FIT_STEPS)
    labels = assign_blocks(vectors, centroids)
    # a centroid no row is nearest to is dropped, so every label in 0..k'-1 is used (as `kmeans` does)
    used, labels = np.unique(labels, return_inverse=True)
    return labels.reshape(-1).astype(np.int64), centroids[used]
