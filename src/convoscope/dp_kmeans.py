"""DP k-means for the base cluster centres in differential privacy mode.

Lloyd's algorithm with noisy counts and noisy sums (the "DP-Lloyd" of Blum et al. 2005 and Su et al.
2016, the building block of Google's DP clustering used by Urania), on the contribution-bounded
conversations, in a random 64-dimensional projection of the embeddings. Why these choices:

- **Noisy Lloyd rounds** need only sums and counts, whose sensitivity is exact and small: a unit
  vector moves a sum by at most 1, so an account with at most `cap` conversations moves the stacked
  sums by at most `cap` (L2) and the counts by at most `cap`. Each round spends an equal share.
- **A random projection** (data-independent, so seeding it costs no privacy) to `DIMENSIONS` dims: the
  noise added to a sum grows with the square root of the dimension, so at 512 dimensions the noise
  would swamp every cluster of fewer than several thousand conversations. Centres are lifted back
  by the projection's transpose (orthonormal rows), which keeps each conversation's nearest centre
  exactly the same in both spaces, so later stages work in the embedding space as usual.
- **k follows the noise**: the number of centres is capped so that a typical cluster's sum is larger
  than its noise (`noise_limited_k`), from the noisy count of the bounded conversations: a small run
  or a small epsilon gets few, coarse clusters instead of many made of noise.
- **Initialisation without data points**: the noisy sums of the cells of a few random hyperplanes
  (locality-sensitive hashing, as Google's DP clustering does), the k heaviest cells first.

Centres from public data (another option in the literature) would cost no budget but depend on a
public corpus resembling the private one; Google's LSH-tree coreset (Chang et al. 2021) needs far more
data than a typical run. Measured utility: benchmarks/dp_utility.py, docs/privacy.md.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np

from convoscope.dp import Budget

DIMENSIONS = 64  # CLINC150 (6,000), epsilon 8: base NMI against intents 0.52 at 32 dims, 0.56 at 64
ROUNDS = 5  # Lloyd rounds after the first (hyperplane cells) release
SIGNAL_TO_NOISE = 3.0  # a cluster's expected sum norm must exceed this many times its noise's norm


@dataclass(frozen=True)
class DPKMeansResult:
    labels: np.ndarray  # every conversation's nearest centre (the bounded ones and the rest)
    centroids: np.ndarray  # unit vectors in the embedding space
    k: int
    noisy_conversations: float  # noisy count of the bounded conversations (released to choose k)


def projection(dim: int, seed: int, dims: int = DIMENSIONS) -> np.ndarray:
    """`dims` x `dim` with orthonormal rows (random, data-independent)."""
    rng = np.random.default_rng([seed, 16])
    q, _ = np.linalg.qr(rng.standard_normal((dim, min(dims, dim))))
    return q.T.astype(np.float64)


def _unit(v: np.ndarray) -> np.ndarray:
    return v / np.maximum(np.linalg.norm(v, axis=-1, keepdims=True), 1e-12)


def noise_limited_k(n: float, sum_scale: float, dims: int, k_max: int) -> int:
    """At most `k_max` clusters, and few enough that an average cluster's sum of unit vectors (about
    half its size: members are not parallel) is `SIGNAL_TO_NOISE` times the noise norm."""
    noise_norm = sum_scale * np.sqrt(dims)
    k = int(max(n, 0) * 0.5 / (SIGNAL_TO_NOISE * noise_norm)) if noise_norm > 0 else k_max
    return int(min(max(k, 2), max(k_max, 2)))


def dp_kmeans(vectors: np.ndarray, bounded: np.ndarray, k_max: int | Callable[[int], int], budget: Budget, seed: int,
              quantity: str = "centres", dims: int = DIMENSIONS, rounds: int = ROUNDS) -> DPKMeansResult:
    """Centres from the rows `bounded` (each account at most `budget.cap` of them) under the
    quantity's share of the budget; labels for every row. `k_max` may be a function of the noisy
    count of bounded rows (the exact count must not choose k: it is not DP)."""
    from convoscope.dp import gaussian_scale

    cap = budget.cap
    proj = projection(vectors.shape[1], seed, dims)
    z_all = _unit(np.asarray(vectors, dtype=np.float64) @ proj.T)
    z = z_all[bounded]
    dims = z.shape[1]
    per_round = budget.rho_of(quantity) / (rounds + 1)
    rho_sum, rho_count = 0.8 * per_round, 0.2 * per_round  # sums carry dims coordinates: most of the share
    # first release: the count of bounded rows (it sets k) and the sums of random-hyperplane cells
    # (locality-sensitive hashing, as Google's DP clustering starts): the k cells with the largest
    # noisy sums are the initial centres, so no data point is ever a centre
    n_hat = float(budget.gaussian(quantity, np.array([len(z)]), cap, rho_count)[0])
    sum_scale = gaussian_scale(cap, rho_sum)
    k = noise_limited_k(n_hat, sum_scale, dims, k_max(max(int(n_hat), 1)) if callable(k_max) else k_max)
    rng = np.random.default_rng([seed, 17])
    bits = int(np.ceil(np.log2(max(k, 2)))) + 2
    cell = (z @ rng.standard_normal((dims, bits)) > 0) @ (1 << np.arange(bits)) if len(z) else np.zeros(0, dtype=np.int64)
    cell_sums = np.zeros((1 << bits, dims))
    np.add.at(cell_sums, cell, z)
    noisy_cells = budget.gaussian(quantity, cell_sums, cap, rho_sum)
    top = np.argsort(-np.linalg.norm(noisy_cells, axis=1), kind="stable")[:k]
    centres = _unit(noisy_cells[top])
    if len(top) < k:  # fewer cells than centres (never with the bits above): random directions for the rest
        centres = np.vstack([centres, _unit(rng.standard_normal((k - len(top), dims)))])
    count_scale = gaussian_scale(cap, rho_count)
    for _ in range(rounds):
        labels = np.argmax(z @ centres.T, axis=1) if len(z) else np.zeros(0, dtype=np.int64)
        counts = budget.gaussian(quantity, np.bincount(labels, minlength=k).astype(np.float64), cap, rho_count)
        sums = np.zeros((k, dims))
        np.add.at(sums, labels, z)
        noisy_sums = budget.gaussian(quantity, sums, cap, rho_sum)
        # a centre whose noisy count is within noise of zero keeps its place (its sum is mostly noise)
        moved = counts > 3 * count_scale
        centres[moved] = _unit(noisy_sums[moved])
    labels = np.argmax(z_all @ centres.T, axis=1) if len(z_all) else np.zeros(0, dtype=np.int64)
    lifted = _unit(centres @ proj).astype(np.float32)
    return DPKMeansResult(labels=labels.astype(np.int64), centroids=lifted, k=k, noisy_conversations=n_hat)


def dp_cluster(ctx, vectors: np.ndarray) -> tuple[np.ndarray, np.ndarray, str]:
    """The cluster stage in DP mode: labels, centroids and the rule that chose k (for its record)."""
    from convoscope.dp import bounded_mask, budget_for
    from convoscope.hierarchy_levels import choose_k
    from convoscope.stages.rows import analysed_rows

    config = ctx.config
    rows = analysed_rows(ctx.store)
    _, account_index = np.unique(rows.accounts, return_inverse=True)
    budget = budget_for(ctx)
    bounded = bounded_mask(rows.conv_ids, account_index.reshape(-1), budget.cap, config.seed)
    with ctx.console.status(f"DP k-means: {len(vectors):,} conversations"):
        result = dp_kmeans(vectors, bounded, lambda n: choose_k(n, config.cluster), budget, config.seed)
    rule = (f"DP k-means (epsilon {budget.epsilon:g} for the whole run, {budget.rho_of('centres'):.3g} of its rho {budget.rho:.3g}): "
            f"k = {result.k}, limited by the noise and by the noisy count of bounded conversations")
    return result.labels, result.centroids, rule


def dp_fingerprint(config) -> tuple:
    """What the DP branch of the cluster and hierarchy stages depends on (nothing in threshold mode)."""
    p = config.privacy
    if p.mode != "dp":
        return ()
    return ("dp-kmeans-v5", p.epsilon, p.delta, p.max_conversations_per_account, DIMENSIONS, ROUNDS, len(config.facets.hierarchy_facets))
