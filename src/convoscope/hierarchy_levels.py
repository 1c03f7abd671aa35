"""How many clusters each level has (the base k, then every level above): one rule for the cluster and
hierarchy stages and for `estimate`, which prices the calls of every level."""

from __future__ import annotations

import math

from convoscope.config import ClusterSettings, HierarchySettings


def level_sizes(n_base: int, h: HierarchySettings) -> list[int]:
    """Cluster counts from the base up to the top, e.g. [1000, 100, 10]."""
    top = h.top_clusters or max(5, min(30, round(math.sqrt(n_base))))
    if n_base <= top:
        return [n_base]
    levels = h.levels or (3 if n_base >= 60 else 2)
    if levels == 1:
        return [n_base]
    ratio = (top / n_base) ** (1 / (levels - 1))
    sizes = [n_base]
    for level in range(1, levels):
        size = top if level == levels - 1 else round(n_base * ratio**level)
        sizes.append(max(1, min(size, sizes[-1] - 1)))
    return sizes


def choose_k(n: int, settings: ClusterSettings) -> int:
    """Base clusters for n conversations. Clusters average sqrt(n) conversations, between
    `min_conversations_per_cluster` and `conversations_per_cluster`: so k = n / 100 from 10,000
    conversations up (the paper's size), and a small input still gets enough clusters to say something
    (500 conversations: 17 instead of 5), each large enough that the privacy gates can publish most of
    them. Measured in docs/evaluation.md (benchmarks/base_cluster_count.py)."""
    per_cluster = min(settings.conversations_per_cluster, max(math.sqrt(n), settings.min_conversations_per_cluster))
    k = round(n / per_cluster)
    k = max(settings.min_clusters, min(settings.max_clusters, k))
    return max(1, min(k, n))
