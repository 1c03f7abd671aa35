"""The base-cluster count rule (issue 14: small inputs still get enough clusters to say something)."""

from __future__ import annotations

import math

from convoscope.config import ClusterSettings, PrivacySettings
from convoscope.hierarchy_levels import choose_k


def test_large_inputs_keep_the_papers_cluster_size():
    settings = ClusterSettings()
    for n in (10_000, 23_695, 100_000, 400_000):
        assert choose_k(n, settings) == round(n / settings.conversations_per_cluster)
    assert choose_k(10_000_000, settings) == settings.max_clusters


def test_small_inputs_get_about_sqrt_n_clusters_large_enough_for_the_gates():
    settings = ClusterSettings()
    assert choose_k(2_000, settings) == round(math.sqrt(2_000))
    assert choose_k(500, settings) == 17  # was 5 (500 / 100)
    # clusters average at least the floor, which leaves room for the privacy stage's minimum
    assert settings.min_conversations_per_cluster >= 2 * PrivacySettings().min_conversations
    for n in range(20, 10_001, 37):
        k = choose_k(n, settings)
        assert k <= n / settings.min_conversations_per_cluster + 0.5 or k == settings.min_clusters  # k is rounded
        assert k >= n / settings.conversations_per_cluster - 0.5


def test_k_grows_with_n_and_stays_within_bounds():
    settings = ClusterSettings()
    ks = [choose_k(n, settings) for n in range(1, 30_000, 13)]
    assert all(a <= b for a, b in zip(ks, ks[1:]))
    assert min(ks) >= 1 and choose_k(1, settings) == 1 and choose_k(3, settings) == 2


def test_a_floor_at_or_above_the_cluster_size_is_the_old_rule():
    old = ClusterSettings(min_conversations_per_cluster=100)
    for n in (500, 2_000, 3_062, 50_000):
        assert choose_k(n, old) == max(2, round(n / 100))
    # an explicit small cluster size below the floor is honoured (tests and the privacy evaluation use it)
    assert choose_k(480, ClusterSettings(conversations_per_cluster=12)) == 40
