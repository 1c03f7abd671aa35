"""The privacy policy's rules one by one (convoscope/policy.py); the attack suites drive them end to end."""

from __future__ import annotations

import numpy as np

from convoscope import policy
from convoscope.config import PrivacySettings

P = PrivacySettings()  # min_accounts 5, min_conversations 15, 3 per account, share 0.5


def test_one_account_with_cover_accounts_fails_the_count_gates():
    # 25 conversations of one account + 4 cover accounts with one each: 5 accounts, 29 conversations
    accounts = np.array([0] * 25 + [1, 2, 3, 4])
    c = policy.group_counts(np.zeros(29, dtype=np.int64), accounts, 1, P.max_conversations_per_account)
    assert (c.size[0], c.accounts[0], c.bounded_size[0], c.top_account[0]) == (29, 5, 7, 25)
    reason = policy.size_gate_reason(29, 5, 7, 25, P)
    assert reason and "each account counts at most 3" in reason
    # enough other accounts to pass the bounded size, still one account above half: withheld
    assert "more than 50%" in policy.size_gate_reason(60, 20, 40, 31, P)
    assert policy.passes_size_gates(40, 20, 40, 3, P)


def test_small_cells_merge_into_other_which_must_pass_too():
    cells = ["en"] * 10 + ["fr"] * 6 + ["de"] * 2
    accounts = [f"a{i}" for i in range(10)] + ["x"] * 5 + ["y"] + ["p", "q"]
    # fr has 2 accounts, de 2: hidden; their union (4 accounts) is too few, so one account of en (the
    # largest cell, which keeps 9 accounts) joins them
    assert policy.breakdown_cells(cells, accounts, 5) == {"en": 9, "other": 9}
    # ... unless en would then fail itself: then en joins whole
    assert policy.breakdown_cells(cells[:5] + cells[10:], accounts[:5] + accounts[10:], 5) == {"other": 13}
    accounts = [f"a{i}" for i in range(10)] + ["x", "y", "z", "w", "v", "u"] + ["p", "q"]
    # fr passes (6 accounts) but de's 2 accounts alone would be isolated: 3 accounts of en join them
    assert policy.breakdown_cells(cells, accounts, 5) == {"en": 7, "fr": 6, "other": 5}
    # a cell one account dominates is not shown even with enough accounts
    cells = ["en"] * 10 + ["fr"] * 14
    accounts = [f"a{i}" for i in range(10)] + ["x"] * 10 + ["y", "z", "w", "v"]
    assert "fr" not in policy.breakdown_cells(cells, accounts, 5, max_account_share=0.5)


def test_other_never_isolates_a_small_cell():
    from collections import Counter, defaultdict

    rng = np.random.default_rng(0)
    topped_up = 0
    for _ in range(300):
        n = int(rng.integers(5, 60))
        cells = rng.choice(list("abcdef"), p=[0.6, 0.2, 0.1, 0.05, 0.03, 0.02], size=n).tolist()
        accounts = rng.integers(0, int(rng.integers(6, 40)), size=n).tolist()
        truth: dict[str, Counter] = defaultdict(Counter)
        for c, a in zip(cells, accounts):
            truth[c][a] += 1
        share = float(rng.choice([0.5, 1.0]))
        out = policy.breakdown_cells(cells, accounts, 5, max_account_share=share)
        shown, other = policy.threshold_cell_members(truth, 5, max_account_share=share)
        assert out == {**{c: sum(m.values()) for c, m in shown.items()}, **({"other": sum(other.values())} if other else {})}
        assert sum(out.values()) == n  # nothing lost, nothing counted twice
        for c, members in shown.items():  # a shown cell: its own conversations only, and it passes
            assert all(members[a] == truth[c][a] for a in members) and len(members) >= 5
            assert max(members.values()) <= share * sum(members.values())
        assert Counter({(c, a): k for c, m in truth.items() for a, k in m.items() if a not in shown.get(c, {})}) == other
        if other and shown:  # "other" never holds fewer than 5 accounts beside named cells
            assert len({a for _, a in other}) >= 5
        topped_up += any(c in shown and 0 < sum(shown[c].values()) < sum(truth[c].values()) for c in truth)
    assert topped_up > 10  # the top-up path ran


def test_sums_of_parts_are_exact():
    assert policy.add_breakdowns([{"a": 3, "other": 2}, {"a": 1, "b": 5}]) == {"b": 5, "a": 4, "other": 2}
    assert policy.add_breakdowns([{"a": 3, "b": 2, "c": 1}], max_cells=1) == {"a": 3, "other": 3}


def test_bin_edges_are_rounded_quantiles_never_the_outlier():
    ages = np.array([18, 22, 25, 31, 34, 38, 41, 45, 52, 58, 63, 70, 131], dtype=float)
    edges = policy.rounded_edges(ages)
    assert all(e == float(f"{e:.2g}") for e in edges) and 131 not in edges and 18 not in edges
    labels = policy.bin_labels(edges)
    assert labels[0].startswith("<") and labels[-1].startswith(">=")
    assert policy.bin_of(np.array([131.0, np.nan]), edges) == [labels[-1], None]


def test_checked_tokens_skip_sentence_openers_but_not_names():
    text = "Help with tax forms\nUsers asked about 1099 forms. Maria asked Quargmire about Python."
    assert policy.checked_tokens(text) == ["1099", "Maria", "Quargmire", "Python"]


def test_vocabulary_needs_min_accounts_in_the_cluster():
    texts = ["the user uses python"] * 6 + ["the user mentions quargmire"] * 6
    accounts = np.array([0, 1, 2, 3, 4, 5, 6, 6, 6, 6, 6, 7])
    vocab = policy.VocabularySupport(texts, accounts, common_accounts=50)
    assert vocab.unsupported("Tips for Python users", np.arange(6), 5) == []
    assert vocab.unsupported("Letters to Quargmire", np.arange(6, 12), 5) == ["Quargmire"]


def test_capped_sample_takes_at_most_a_few_per_account():
    accounts = np.array([0] * 40 + list(range(1, 11)))
    picked = policy.capped_sample(np.arange(50), accounts, 3, 50, np.random.default_rng(0))
    assert (accounts[picked] == 0).sum() == 3 and len(picked) == 13
    weights = policy.per_account_weights(np.zeros(50, dtype=np.int64), accounts, 3)
    assert abs(weights[accounts == 0].sum() - 3) < 1e-9 and (weights[accounts != 0] == 1).all()
