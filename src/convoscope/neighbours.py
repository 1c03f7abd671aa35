"""Exact nearest neighbours by cosine similarity, shared by the map (UMAP's neighbour graph) and the
extractive hierarchy (neighbour links between base clusters)."""

from __future__ import annotations

import numpy as np


def cosine_knn(queries: np.ndarray, reference: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Exact k nearest reference rows of each query by cosine distance (unit vectors), nearest first.

    A blocked matrix product: on 2 cores 10,000 x 10,000 takes about 2 s, where UMAP's own approximate
    search (pynndescent) first spends 40-50 s compiling itself in every new process."""
    k = min(k, len(reference))
    # float16 rows (the embeddings artifact) to float32 once: numpy has no fast float16 matrix product
    queries, reference = (np.asarray(a, dtype=np.float32) for a in (queries, reference))
    indices = np.empty((len(queries), k), dtype=np.int64)
    distances = np.empty((len(queries), k), dtype=np.float32)
    block = max(1, min(2048, 16_000_000 // max(1, len(reference))))  # at most 64 MB of similarities at once
    for start in range(0, len(queries), block):
        sims = queries[start:start + block] @ reference.T
        part = np.argpartition(-sims, k - 1, axis=1)[:, :k]
        part_sims = np.take_along_axis(sims, part, axis=1)
        order = np.argsort(-part_sims, axis=1, kind="stable")
        indices[start:start + block] = np.take_along_axis(part, order, axis=1)
        distances[start:start + block] = np.maximum(1.0 - np.take_along_axis(part_sims, order, axis=1), 0.0)
    return indices, distances


# Lloyd steps of the cells' k-means: the cells only steer the search (each query also searches the
# `probe` nearest cells), so a rough partition does; scikit-learn's KMeans (3 starts, up to 300 steps)
# took 60 CPU seconds for 100 cells of 10,000 points on the loaded machine, more than the placing.
CELL_STEPS = 10


def coarse_cells(reference: np.ndarray, cells: int, seed: int, steps: int = CELL_STEPS) -> tuple[np.ndarray, np.ndarray]:
    """Each row's cell and the cells' unit centroids: spherical k-means from `cells` seeded random rows,
    `steps` Lloyd steps (a cell left empty keeps its centroid), empty cells dropped at the end."""
    cells = max(1, min(cells, len(reference)))
    centroids = reference[np.sort(np.random.default_rng(seed).choice(len(reference), size=cells, replace=False))].copy()
    for _ in range(steps):
        labels = np.argmax(reference @ centroids.T, axis=1)
        sums = np.zeros_like(centroids)
        np.add.at(sums, labels, reference)
        norms = np.linalg.norm(sums, axis=1, keepdims=True)
        centroids = np.where(norms > 0, sums / np.maximum(norms, 1e-12), centroids).astype(np.float32)
    used, labels = np.unique(np.argmax(reference @ centroids.T, axis=1), return_inverse=True)
    return labels.reshape(-1), centroids[used]


class CellIndex:
    """Near-exact cosine neighbours among many queries for a fixed reference set, an inverted file:
    the reference rows are split into `cells` by a rough k-means (`coarse_cells`), and each query is searched exactly (by
    `cosine_knn`) among the rows of the `probe` cells nearest to its own nearest cell. About probe/cells
    of the exact search's arithmetic; the queries sharing a nearest cell share one matrix product.
    Deterministic for the same reference rows and seed.

    The map places the conversations outside its fitted sample with it: at a million conversations the
    exact search (990,000 x 10,000 similarities) was most of the map's time."""

    def __init__(self, reference: np.ndarray, cells: int, probe: int, seed: int):
        self.reference = np.asarray(reference, dtype=np.float32)
        labels, self.centroids = coarse_cells(self.reference, cells, seed)
        order = np.argsort(labels, kind="stable")
        bounds = np.searchsorted(labels[order], np.arange(len(self.centroids) + 1))
        members = [order[bounds[c]:bounds[c + 1]] for c in range(len(self.centroids))]
        near = np.argsort(-(self.centroids @ self.centroids.T), axis=1, kind="stable")[:, :min(probe, len(self.centroids))]
        self.candidates = [np.sort(np.concatenate([members[j] for j in near[c]])) for c in range(len(self.centroids))]

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Like `cosine_knn(queries, reference, k)`."""
        queries = np.asarray(queries, dtype=np.float32)
        k = min(k, len(self.reference))
        everything = np.arange(len(self.reference))
        cell = np.argmax(queries @ self.centroids.T, axis=1)
        indices = np.empty((len(queries), k), dtype=np.int64)
        distances = np.empty((len(queries), k), dtype=np.float32)
        for c in np.unique(cell):
            rows = np.flatnonzero(cell == c)
            candidates = self.candidates[c] if len(self.candidates[c]) >= k else everything  # a tiny cell group: search all
            found, dist = cosine_knn(queries[rows], self.reference[candidates], k)
            indices[rows] = candidates[found]
            distances[rows] = dist
        return indices, distances
