"""The name stage's per-cluster account counts from account indices equal rows.distinct_per_group's from the hashes."""

from __future__ import annotations

import numpy as np

from convoscope.stages.naming import _distinct_accounts
from convoscope.stages.rows import distinct_per_group


def test_distinct_accounts_per_cluster_match_the_hash_based_count():
    rng = np.random.default_rng(0)
    for _ in range(50):
        n, k = int(rng.integers(1, 500)), int(rng.integers(1, 20))
        accounts = np.asarray([f"h{x}" for x in rng.integers(0, 40, n)], dtype=object)
        labels = rng.integers(0, k, n)
        _, index = np.unique(accounts, return_inverse=True)
        assert np.array_equal(_distinct_accounts(labels, index.reshape(-1), k), distinct_per_group(labels, accounts, k))
