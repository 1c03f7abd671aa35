"""The Ray engine's plan and bookkeeping, without Ray: shards of the input, merged LLM usage."""

from __future__ import annotations

import pytest

pytest.importorskip("ray")

from convoscope.engines.ray_engine import FilePlan, plan_shards  # noqa: E402
from convoscope.pipeline import merge_usage  # noqa: E402


def test_shards_cover_every_kept_conversation_once_in_input_order_and_never_span_files():
    files = [FilePlan("a.jsonl", "a.jsonl", 10, (2, 3)), FilePlan("b.jsonl", "b.jsonl", 0), FilePlan("c.jsonl", "c.jsonl", 7, (0, 6))]
    shards = plan_shards(files, per_shard=3)
    kept = [(s.path, p) for s in shards for p in range(s.start, s.stop) if p not in s.drop]
    expected = [("a.jsonl", p) for p in range(10) if p not in (2, 3)] + [("c.jsonl", p) for p in range(1, 6)]
    assert kept == expected
    assert all(s.rows <= 3 for s in shards) and [s.row0 for s in shards] == [sum(t.rows for t in shards[:i]) for i in range(len(shards))]
    assert [s.index for s in shards] == list(range(len(shards)))
    assert sum(s.rows for s in shards) == len(expected)


def test_usage_of_the_workers_adds_up_but_the_cap_is_the_runs():
    driver = {"roles": {"naming": {"backend": "openai:m", "calls": 3, "cost_usd": 0.5, "price_known": True}},
              "total": {"calls": 3, "cost_usd": 0.5}, "tasks": {"name": {"calls": 3}}, "max_cost_usd": 10.0, "notes": [], "requests_sent": 3}
    worker = {"roles": {"facets": {"backend": "openai:m", "calls": 100, "cost_usd": 1.0, "price_known": True}},
              "total": {"calls": 100, "cost_usd": 1.0}, "tasks": {"facets": {"calls": 100}}, "max_cost_usd": 5.0, "notes": ["n"], "requests_sent": 101}
    merged = merge_usage(driver, worker, worker)
    assert merged["total"] == {"calls": 203, "cost_usd": 2.5}
    assert merged["roles"]["facets"]["calls"] == 200 and merged["roles"]["naming"]["calls"] == 3
    assert merged["roles"]["facets"]["backend"] == "openai:m" and merged["roles"]["facets"]["price_known"] is True
    assert merged["max_cost_usd"] == 10.0 and merged["requests_sent"] == 205 and merged["notes"] == ["n"]
