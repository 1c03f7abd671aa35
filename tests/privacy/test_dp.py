"""Differential privacy mode (issue 16): the budget against OpenDP's accounting, the mechanisms'
parameters against OpenDP's privacy maps, contribution bounding, DP k-means, and an empirical check
that one account more changes a released statistic no more than epsilon allows.

OpenDP takes no seed (its noise comes from the system's secure generator), so the statistical tests
use bounds whose false-failure probability is below one in a billion; each also shows it can fail.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy.stats import beta

from convoscope import dp
from convoscope.config import PrivacySettings
from convoscope.dp_kmeans import dp_kmeans, noise_limited_k, projection
from convoscope.dp_release import COUNT_SHARES, conversation_terms


def settings(epsilon: float, delta: float = 1e-6, cap: int = 3) -> PrivacySettings:
    return PrivacySettings(mode="dp", epsilon=epsilon, delta=delta, max_conversations_per_account=cap)


@pytest.mark.parametrize("epsilon", [0.5, 1.0, 8.0])
def test_the_split_budget_converts_to_the_stated_epsilon_by_opendp(epsilon):
    budget = dp.plan(settings(epsilon))
    assert math.isclose(sum(dp.SHARES.values()), 1.0) and math.isclose(sum(dp.DELTA_SHARES.values()), 1.0)
    total = sum(budget.rho_of(q) for q in dp.SHARES)
    # zCDP composes by adding rho; OpenDP converts the total at the conversion's share of delta
    assert dp.epsilon_of(total, budget.delta_of("conversion")) <= epsilon
    assert dp.epsilon_of(total * 1.01, budget.delta_of("conversion")) > epsilon * 0.999  # not wastefully small
    # the partition selections' deltas and the conversion's add up to the stated delta
    assert sum(budget.delta_of(q) for q in dp.DELTA_SHARES) <= budget.delta * (1 + 1e-12)


def test_gaussian_releases_cost_what_opendp_says_and_never_more_than_their_share():
    import opendp.prelude as odp

    budget = dp.plan(settings(1.0))
    share = budget.rho_of("cluster_counts")
    noisy = budget.gaussian("cluster_counts", np.array([10.0, 20.0]), 3.0, share / 2)
    assert noisy.shape == (2,)
    scale = dp.gaussian_scale(3.0, share / 2)
    meas = odp.m.make_gaussian(odp.vector_domain(odp.atom_domain(T=float, nan=False)), odp.l2_distance(T=float), scale=scale)
    assert math.isclose(budget.spent["cluster_counts"], meas.map(3.0), rel_tol=1e-9)
    assert budget.spent["cluster_counts"] <= share / 2 * (1 + 1e-6)
    budget.gaussian("cluster_counts", np.array([1.0]), 3.0, share / 2)
    with pytest.raises(dp.BudgetExceeded):  # the quantity's share is spent
        budget.gaussian("cluster_counts", np.array([1.0]), 3.0, share / 100)


def test_partition_selection_uses_opendp_threshold_and_its_delta():
    budget = dp.plan(settings(1.0))
    kept, scale, threshold = budget.select_keys("vocabulary", {"common": 100_000, "rare": 1}, l0=24, linf=1)
    assert "common" in kept and "rare" not in kept
    assert budget.spent_delta["vocabulary"] <= budget.delta_of("vocabulary")
    assert budget.spent["vocabulary"] <= budget.rho_of("vocabulary") * (1 + 1e-6)
    # the threshold is the smallest one OpenDP accepts at this delta
    assert dp.selection_threshold(scale, 24, 1, budget.delta_of("vocabulary")) == threshold
    assert threshold > 1 + 4 * scale  # a key one account touched is far below it


def test_contribution_bounding_keeps_cap_per_account_and_ignores_other_accounts():
    ids = [f"c{i}" for i in range(12)]
    accounts = np.array([0] * 7 + [1] * 2 + [2] * 3)
    mask = dp.bounded_mask(ids, accounts, 3)
    assert [int(mask[accounts == a].sum()) for a in range(3)] == [3, 2, 3]
    # one account more (with its conversations) changes nobody else's selection
    more = dp.bounded_mask(ids + ["x1", "x2", "x3", "x4"], np.r_[accounts, [3, 3, 3, 3]], 3)
    assert (more[:12] == mask).all() and more[12:].sum() == 3


def _upper(k: int, n: int, alpha: float = 1e-10) -> float:
    return 1.0 if k == n else float(beta.ppf(1 - alpha, k + 1, n - k))


def _lower(k: int, n: int, alpha: float = 1e-10) -> float:
    return 0.0 if k == 0 else float(beta.ppf(alpha, k, n - k + 1))


def _violations(sample_d: np.ndarray, sample_d2: np.ndarray, epsilon: float, delta: float) -> list[float]:
    """Thresholds t where P[X >= t] under one input provably exceeds e^eps P[X' >= t] + delta under
    the other (Clopper-Pearson bounds at 1e-10 each), in either direction."""
    bad = []
    n = len(sample_d)
    for t in np.quantile(np.r_[sample_d, sample_d2], np.linspace(0.001, 0.999, 60)):
        for a, b in ((sample_d, sample_d2), (sample_d2, sample_d)):
            ka, kb = int((a >= t).sum()), int((b >= t).sum())
            if _lower(ka, n) > math.exp(epsilon) * _upper(kb, n) + delta:
                bad.append(float(t))
    return bad


def test_one_account_more_moves_a_released_count_within_epsilon():
    """Neighbouring inputs: a cluster's distinct accounts with and without one more account. The
    privacy stage releases it with the Gaussian scale below (every level at once, `cap` per level);
    10,000 draws of each (OpenDP's exact sampler takes about 0.3 ms a draw) show no event whose
    probability ratio provably exceeds that release's epsilon."""
    import opendp.prelude as odp

    p = settings(1.0)
    budget = dp.plan(p)
    levels = 3
    sensitivity = math.sqrt(p.max_conversations_per_account * levels)
    rho = budget.rho_of("cluster_counts") * COUNT_SHARES["accounts"]
    scale = dp.gaussian_scale(sensitivity, rho)
    meas = odp.m.make_gaussian(odp.vector_domain(odp.atom_domain(T=float, nan=False)), odp.l2_distance(T=float), scale=scale)
    n = 10_000
    without = np.asarray(meas([40.0] * n))
    # the worst neighbour: one account more moves this count by 1 and the rest of the vector by up to sensitivity
    with_one = np.asarray(meas([40.0 + sensitivity] * n))
    eps_release = dp.epsilon_of(float(meas.map(sensitivity)), budget.delta)
    assert eps_release <= p.epsilon
    assert not _violations(without, with_one, eps_release, budget.delta)
    # the check has power: a release with a twentieth of the noise is caught
    weak = odp.m.make_gaussian(odp.vector_domain(odp.atom_domain(T=float, nan=False)), odp.l2_distance(T=float), scale=scale / 20)
    assert _violations(np.asarray(weak([40.0] * 5000)), np.asarray(weak([40.0 + sensitivity] * 5000)), eps_release, budget.delta)


def test_dp_kmeans_finds_separated_clusters_at_large_epsilon_and_few_at_small():
    from sklearn.metrics import normalized_mutual_info_score

    rng = np.random.default_rng(0)
    centres = np.linalg.qr(rng.standard_normal((64, 4)))[0].T  # 4 orthogonal directions
    truth = rng.integers(0, 4, 8000)
    vectors = centres[truth] + 0.15 * rng.standard_normal((8000, 64))
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    bounded = np.ones(len(vectors), dtype=bool)
    result = dp_kmeans(vectors, bounded, 4, dp.plan(settings(8.0, cap=1)), seed=0)
    assert result.centroids.shape == (result.k, 64)
    assert np.allclose(np.linalg.norm(result.centroids, axis=1), 1, atol=1e-5)
    assert normalized_mutual_info_score(truth, result.labels) > 0.8
    # lifted centres give every row the same nearest centre as in the projection
    proj = projection(64, 0)
    z = vectors @ proj.T
    z /= np.linalg.norm(z, axis=1, keepdims=True)
    assert (np.argmax(vectors @ result.centroids.T, axis=1) == result.labels).mean() > 0.999
    # with little data and budget, k is limited by the noise
    assert noise_limited_k(500, dp.gaussian_scale(3, 0.001), 32, 100) == 2


def test_a_conversation_contributes_a_bounded_number_of_terms():
    terms = conversation_terms(["alpha beta gamma delta epsilon zeta eta theta iota kappa alpha", "", "2024 1999"])
    assert terms[0] == ["alpha", "beta", "gamma", "delta", "epsilon", "zeta", "eta", "theta"][:dp.TERMS_PER_CONVERSATION]
    assert terms[1] == [] and terms[2] == []  # digits never form terms


def test_without_account_ids_each_conversation_is_an_account_of_one_conversation():
    p = settings(1.0)
    assert dp.plan(p).cap == 3
    budget = dp.plan(p, conversation_is_account=True)
    assert budget.cap == 1 and "no account ids" in budget.guarantee()["note"]
    two = dp.plan(p, hierarchies=2)  # two hierarchies share the run's budget
    assert math.isclose(two.rho * 2, dp.plan(p).rho) and math.isclose(two.guarantee()["delta"], p.delta)
