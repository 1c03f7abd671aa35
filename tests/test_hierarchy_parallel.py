"""The LLM hierarchy sends each step's calls together (propose, dedupe, assign, rename: one
complete_many each, run concurrently by the client under its limits) and is deterministic: the same
answers give the same parents, names and order."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace

import numpy as np
from fakes.clio_responder import make_responder
from fakes.llm_servers import FakeOpenAIServer, hashed_embedding

from convoscope.config import HierarchySettings
from convoscope.llm import LLMSettings, build_client
from convoscope.stages.hierarchy import Node, _describe, _llm_parents

TOPICS = ["cooking", "taxes", "python", "travel"]


def _embed(texts):
    return np.array([hashed_embedding(t, 64) for t in texts], dtype=np.float32)


def _one_level(url: str, concurrency: int):
    client = build_client(LLMSettings(facets=f"openai:fake@{url}", cache=False, max_concurrency=concurrency), progress=False)
    loop = asyncio.new_event_loop()
    steps: list[tuple[str, int]] = []

    def complete_many(requests, description="", *, show_progress=True):
        steps.append((requests[0].task, len(requests)))
        return loop.run_until_complete(client.complete_many(requests, show_progress=False))

    ctx = SimpleNamespace(config=SimpleNamespace(seed=0, hierarchy=HierarchySettings(neighbourhood_size=10)), complete_many=complete_many)
    children = [Node(f"b{i}", f"Get help with {TOPICS[i % 4]} question {i}", f"Users asked about {TOPICS[i % 4]}.", np.array([i]))
                for i in range(30)]
    try:
        labels, names = _llm_parents(ctx, children, 3, _embed([_describe(c) for c in children]), _embed, np.ones(30, dtype=bool))
    finally:
        loop.run_until_complete(client.aclose())
        loop.close()
    return labels, names, steps


def test_each_step_runs_its_calls_concurrently_and_the_result_is_deterministic():
    with FakeOpenAIServer(responder=make_responder(), latency=0.05) as server:
        labels, names, steps = _one_level(server.url, concurrency=8)
        in_flight = server.max_in_flight
        calls = server.request_count
    assert [task for task, _ in steps] == ["propose_parents", "dedupe_parents", "assign", "rename"]  # one batch per step
    assert dict(steps)["propose_parents"] == 3 and dict(steps)["assign"] == 30
    assert calls == sum(n for _, n in steps) and in_flight == 8  # the assign step filled the concurrency limit
    assert sorted(n for n, _ in names) == sorted({n for n, _ in names}) and len(names) == labels.max() + 1
    with FakeOpenAIServer(responder=make_responder()) as server:  # the same answers, other timing and limit
        again_labels, again_names, _ = _one_level(server.url, concurrency=3)
    assert (again_labels == labels).all() and again_names == names
