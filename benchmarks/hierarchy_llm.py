"""The LLM hierarchy (propose, dedupe, assign, rename per level) at 100 and 1,000 base clusters against
the fake OpenAI-compatible server with a fixed latency, cache off.

    python benchmarks/hierarchy_llm.py [--base 100 1000] [--latency 0.2] [--concurrency 16]

Runs `stages.hierarchy._llm_parents` level by level with the level sizes of `hierarchy_levels` (what
`build_hierarchy` does in LLM mode), on synthetic base clusters (topic x subtopic names) embedded by
the fakes' hashed bag of words; every child is publishable (the privacy gate is not timed here). The
responder answers each task from the prompt it is shown (propose: about the wanted number of names;
dedupe: the first names; assign: the listed parent sharing most words; rename: from the children).
Each step sends its calls together (one complete_many), so a step costs about
ceil(calls / concurrency) x latency and the stage about the sum over steps; the script prints that
ideal next to calls x latency / concurrency and the measured wall time. The fake runs in this
process (threads), so at high concurrency part of the time is the fake itself.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import platform
import re
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

TOPICS = ["cooking", "taxes", "python", "travel", "gardening", "fitness", "music", "history", "chemistry", "poetry", "marketing", "law",
          "javascript", "parenting", "finance", "astronomy", "painting", "cars", "pets", "linux"]
ASPECTS = ["basics", "errors", "planning", "comparisons", "advice", "examples", "tools", "reviews", "costs", "safety", "history", "careers",
           "recipes", "tips", "rules", "projects", "questions", "setup", "learning", "problems"]
VARIANTS = ["for beginners", "for experts", "at home", "at work", "for students", "on a budget", "quickly", "in detail", "for a family",
            "for a small team"]


def base_names(n: int) -> list[tuple[str, str]]:
    names = []
    for i in range(n):
        topic, aspect, variant = TOPICS[i % len(TOPICS)], ASPECTS[(i // len(TOPICS)) % len(ASPECTS)], VARIANTS[(i // 400) % len(VARIANTS)]
        names.append((f"Get help with {topic} {aspect} {variant}", f"Users asked about {topic} {aspect} {variant}. They wanted practical answers."))
    return names


def responder_for():
    from fakes.clio_responder import _between, make_responder
    from fakes.llm_servers import last_user_text, schema_of

    base = make_responder()

    def names_from(lines: list[str]) -> list[str]:
        """A parent per topic and aspect found in the children shown ("Get help with cooking tips")."""
        seen = []
        for line in lines:
            words = re.findall(r"[a-z]+", line.split(":")[0].lower())
            if "with" in words and len(words) > words.index("with") + 2:
                seen.append("Get help with " + " ".join(words[words.index("with") + 1:words.index("with") + 3]))
        return list(dict.fromkeys(seen))

    def responder(body):
        props = (schema_of(body) or {}).get("properties", {})
        text = last_user_text(body)
        if "names" in props:
            m = re.search(r"about (\d+)", text)
            want = int(m.group(1)) if m else 3
            if "<candidates>" in text:
                lines = [ln[2:] for ln in _between(text, "candidates").splitlines() if ln.startswith("- ")]
                return json.dumps({"names": lines[:want]})
            lines = [ln[2:] for ln in _between(text, "clusters").splitlines() if ln.startswith("- ")]
            return json.dumps({"names": names_from(lines)[:max(1, want)] or ["Get help with other things"]})
        return base(body)

    return responder


def run(n_base: int, latency: float, concurrency: int) -> dict:
    from fakes.llm_servers import FakeOpenAIServer, hashed_embedding

    from convoscope.config import HierarchySettings
    from convoscope.hierarchy_levels import level_sizes
    from convoscope.llm import LLMSettings, build_client
    from convoscope.stages.hierarchy import Node, _describe, _llm_parents

    def embed(texts: list[str]) -> np.ndarray:
        return np.array([hashed_embedding(t, 256) for t in texts], dtype=np.float32)

    with FakeOpenAIServer(responder=responder_for(), latency=latency) as server:
        client = build_client(LLMSettings(facets=f"openai:bench@{server.url}", cache=False, max_concurrency=concurrency), progress=False)
        loop = asyncio.new_event_loop()
        steps: list[int] = []
        step_seconds: list[float] = []

        def complete_many(requests, description="", *, show_progress=True):
            steps.append(len(requests))
            began = time.perf_counter()
            out = loop.run_until_complete(client.complete_many(requests, description=description, show_progress=False))
            step_seconds.append(time.perf_counter() - began)
            return out

        hierarchy = HierarchySettings()
        ctx = SimpleNamespace(config=SimpleNamespace(seed=0, hierarchy=hierarchy), complete_many=complete_many)
        children = [Node(f"b{i}", name, desc, np.array([i])) for i, (name, desc) in enumerate(base_names(n_base))]
        sizes = level_sizes(n_base, hierarchy)
        start = time.perf_counter()
        for desired in sizes[1:]:
            vectors = embed([_describe(c) for c in children])
            labels, names = _llm_parents(ctx, children, desired, vectors, embed, np.ones(len(children), dtype=bool))
            children = [Node(f"p{g}", names[g][0], names[g][1], np.flatnonzero(labels == g)) for g in range(labels.max() + 1)]
        wall = time.perf_counter() - start
        usage = client.usage_summary()
        loop.run_until_complete(client.aclose())
        loop.close()
        calls = server.request_count
    return {"base": n_base, "sizes": sizes, "calls": calls, "steps": steps, "step_seconds": step_seconds, "wall": wall, "usage": usage,
            "serial": calls * latency, "flat_bound": calls * latency / concurrency,
            "step_bound": sum(math.ceil(s / concurrency) for s in steps) * latency}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--base", type=int, nargs="+", default=[100, 1000])
    parser.add_argument("--latency", type=float, default=0.2)
    parser.add_argument("--concurrency", type=int, default=16)
    args = parser.parse_args()
    print(f"machine: {platform.platform()}, {len(os.sched_getaffinity(0))} usable CPUs; fake latency {args.latency * 1000:.0f} ms, "
          f"max_concurrency {args.concurrency}, cache off")
    print(f"{'base':>6} {'levels':>16} {'calls':>6} {'steps':>6} {'wall s':>8} {'calls x lat / conc':>19} {'sum over steps':>15} {'one by one':>11}")
    for n in args.base:
        r = run(n, args.latency, args.concurrency)
        print(f"{r['base']:>6} {str(r['sizes']):>16} {r['calls']:>6} {len(r['steps']):>6} {r['wall']:>8.1f} {r['flat_bound']:>19.1f} "
              f"{r['step_bound']:>15.1f} {r['serial']:>11.1f}")
        print(f"       calls per step: {r['steps']}; seconds per step: {[round(x, 2) for x in r['step_seconds']]}; "
              f"outside the calls (k-means, embedding): {r['wall'] - sum(r['step_seconds']):.1f} s")


if __name__ == "__main__":
    main()
