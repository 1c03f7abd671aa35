"""Stage 8: the map. UMAP of the conversation embeddings to 2-D (cosine, 15 neighbours, min_dist 0,
as in the paper); on large data it is fitted on a seeded sample and the rest are placed by UMAP's
transform procedure. Nearest neighbours are computed exactly by matrix products rather than by
UMAP's approximate index, whose compilation dominated the stage's time."""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np
import pyarrow as pa

from convoscope.components import custom_reducer, fingerprint_parts, reduce_with
from convoscope.context import RunContext
from convoscope.neighbours import CellIndex, cosine_knn
from convoscope.stage_runner import Stage, StageOutput, StageRecord, run_stage


@dataclass(frozen=True)
class MapRecord(StageRecord):
    fitted_on: int  # conversations the reducer was fitted on (the rest placed by UMAP's transform)


# Above this many points outside the fitted sample their neighbours among the sample are searched by
# an inverted file (neighbours.CellIndex: 100 cells of 100 sampled points, 10 searched per point) instead
# of exactly: a tenth of the arithmetic, where the exact search was most of the map's time at a million.
CELL_SEARCH_MIN_REST = 50_000
CELL_SIZE = 100
CELLS_PROBED = 10
# Layout epochs of the fit: UMAP's own choice for more than 10,000 points (it takes 500 at 10,000 and
# fewer, which made the default 10,000-point fit 2.5 times as long for the same map quality, see
# docs/benchmarks.md: `benchmarks/scale_quality.py map`).
FIT_EPOCHS = 200


def _cache_umap_compilation() -> None:
    """Keep numba's machine code for UMAP's layout and graph functions on disk (numba's own cache, as
    `cache=True` would, beside UMAP's sources or in numba's user cache directory), so a new process
    loads them instead of compiling them again: about 8 CPU seconds per run. UMAP compiles these
    without `cache=True`; a numba without `enable_caching` just compiles as before."""
    import umap.layouts
    import umap.umap_

    for function in (umap.layouts._nb_optimize_layout_euclidean_single_epoch, umap.umap_.smooth_knn_dist,
                     umap.umap_.compute_membership_strengths):
        if hasattr(function, "enable_caching"):
            try:
                function.enable_caching()
            except Exception:  # noqa: BLE001 - a cache it cannot set up only costs the compilation
                pass


def initial_positions(graph, fitted_coords: np.ndarray) -> np.ndarray:
    """UMAP's `init_graph_transform` without its Python loop over rows (two thirds of the placing's time):
    each new point at the weighted mean of its fitted neighbours' positions, at a neighbour's position
    where their membership strength is 1 (the first such), NaN without neighbours."""
    sums = np.asarray(graph.sum(axis=1)).ravel()
    with np.errstate(invalid="ignore", divide="ignore"):
        out = np.asarray(graph @ fitted_coords, dtype=np.float64) / sums[:, None]
    out[np.diff(graph.indptr) == 0] = np.nan
    rows = np.repeat(np.arange(graph.shape[0]), np.diff(graph.indptr))
    ones = np.flatnonzero(graph.data == 1)
    first_row, first = np.unique(rows[ones], return_index=True)
    out[first_row] = fitted_coords[graph.indices[ones[first]]]
    return out.astype(np.float32)


def _place_rest(reducer, rest: np.ndarray, fitted: np.ndarray, seed: int, index: CellIndex | None = None) -> np.ndarray:
    """UMAP's transform for points outside the fitted sample, with the neighbour search above (exact, or
    `index`) instead of UMAP's search index: the same membership weights, initial placement (weighted mean
    of the neighbours' positions) and 30 epochs of layout optimisation with the fitted points held still."""
    import scipy.sparse
    from umap.layouts import optimize_layout_euclidean
    from umap.umap_ import compute_membership_strengths, make_epochs_per_sample, smooth_knn_dist

    k = reducer._n_neighbors
    indices, distances = index.search(rest, k) if index is not None else cosine_knn(rest, fitted, k)
    sigmas, rhos = smooth_knn_dist(distances, float(k), local_connectivity=max(0.0, reducer.local_connectivity - 1.0))
    rows, cols, vals, _ = compute_membership_strengths(indices.astype(np.int32), distances, sigmas, rhos, bipartite=True)
    graph = scipy.sparse.coo_matrix((vals, (rows, cols)), shape=(len(rest), len(fitted)))
    csr = graph.tocsr()
    csr.eliminate_zeros()
    embedding = initial_positions(csr, reducer.embedding_)
    n_epochs = 30
    graph.data[graph.data < graph.data.max() / n_epochs] = 0.0
    graph.eliminate_zeros()
    rng_state = np.random.default_rng(seed).integers(-(2**31), 2**31 - 1, 3).astype(np.int64)
    return optimize_layout_euclidean(
        embedding, reducer.embedding_.astype(np.float32, copy=True), graph.row, graph.col, n_epochs, len(fitted),
        make_epochs_per_sample(graph.data, n_epochs), reducer._a, reducer._b, rng_state, reducer.repulsion_strength,
        reducer._initial_alpha / 4.0, reducer.negative_sample_rate, False, move_other=False)


def project_2d(vectors: np.ndarray, n_neighbors: int, min_dist: float, fit_sample: int, seed: int,
               n_epochs: int = FIT_EPOCHS) -> np.ndarray:
    n = len(vectors)
    if n < 4:
        return np.zeros((n, 2), dtype=np.float32)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import umap

        _cache_umap_compilation()
        sample = np.arange(n) if n <= fit_sample else np.sort(np.random.default_rng(seed).choice(n, size=fit_sample, replace=False))
        # float32 copies of the sample and of one block of the rest at a time: `vectors` may be a float16 memory map
        fitted = np.ascontiguousarray(vectors[sample], dtype=np.float32)
        k = min(n_neighbors, len(fitted) - 1)
        # neighbours computed here (exact, each point its own first neighbour as UMAP expects)
        knn = cosine_knn(fitted, fitted, k)
        reducer = umap.UMAP(n_neighbors=k, min_dist=min_dist, metric="cosine", random_state=seed, n_components=2,
                            init="spectral" if len(fitted) > k + 2 else "random", low_memory=True, precomputed_knn=knn,
                            n_epochs=n_epochs)
        fitted_coords = reducer.fit_transform(fitted)
        if n == len(sample):
            return np.asarray(fitted_coords, dtype=np.float32)
        coords = np.empty((n, 2), dtype=np.float32)
        coords[sample] = fitted_coords
        rest = np.setdiff1d(np.arange(n), sample)
        index = None
        if len(rest) > CELL_SEARCH_MIN_REST:
            index = CellIndex(fitted, cells=max(1, len(fitted) // CELL_SIZE), probe=CELLS_PROBED, seed=seed)
        for start in range(0, len(rest), 20000):
            chunk = rest[start:start + 20000]
            coords[chunk] = _place_rest(reducer, np.asarray(vectors[chunk], dtype=np.float32), fitted, seed + start, index)
    return coords


def _settings(ctx: RunContext) -> tuple:
    return ctx.config.map.model_dump(), ctx.config.seed, *fingerprint_parts(ctx, "reducer"), ("fit-epochs", FIT_EPOCHS)


def _map(ctx: RunContext) -> StageOutput[MapRecord]:
    m = ctx.config.map
    vectors = ctx.store.read_array("embeddings")  # memory-mapped float16
    reducer = custom_reducer(ctx)  # injected (convoscope.components), else our UMAP
    if reducer is not None:
        vectors = np.asarray(vectors, dtype=np.float32)
    with ctx.console.status(f"{type(reducer).__name__ if reducer is not None else 'UMAP'} map of {len(vectors):,} conversations"):
        coords = reduce_with(reducer, vectors) if reducer is not None else project_2d(vectors, m.n_neighbors, m.min_dist, m.fit_sample, ctx.config.seed)
    conv_ids = ctx.store.read_table("facets", columns=["conv_id"]).column("conv_id")
    table = pa.table({"conv_id": conv_ids, "x": pa.array(coords[:, 0]), "y": pa.array(coords[:, 1])})
    artifact = ctx.store.write_table("map", table)
    return StageOutput([artifact], MapRecord(fitted_on=len(vectors) if reducer is not None else min(len(vectors), m.fit_sample)))


MAP = Stage("map", _settings, _map)


def run_map(ctx: RunContext, upstream: str) -> str:
    return run_stage(MAP, ctx, upstream)
