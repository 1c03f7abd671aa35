"""LLM calls and tokens per conversation, per pipeline task, against the paper's cost model.

    python benchmarks/llm_cost.py [--n 1000]

Runs the full pipeline in LLM mode on N real hh-rlhf dialogues against the fake OpenAI-compatible
server (tests/fakes, zero latency, answers that follow each task's JSON schema). The fake counts
tokens as characters / 4, like our estimator, so the numbers are about prompt sizes and call counts,
not any real model's tokenizer. The paper's anchor: about 1,300 input tokens per 1,000-token
conversation for facets, and about $49 per 100k conversations (facets $45, naming $3.75, hierarchy $0.06).
"""

from __future__ import annotations

import argparse
import gzip
import os
import platform
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
HH = ROOT.parent / "shared" / "data" / "hh-rlhf-harmless" / "harmless-base-test.jsonl.gz"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--n", type=int, default=1000)
    args = parser.parse_args()
    from fakes.clio_responder import make_responder
    from fakes.llm_servers import FakeOpenAIServer

    from convoscope.config import load_config
    from convoscope.ingest import read_conversations
    from convoscope.pipeline import run_pipeline
    from convoscope.conversation_format import format_conversation

    with tempfile.TemporaryDirectory() as tmp, gzip.open(HH, "rt", encoding="utf-8") as fh:
        data = Path(tmp) / "hh.jsonl"
        data.write_text("".join(line for _, line in zip(range(args.n), fh)))
        os.environ["CONVOSCOPE_CACHE_DIR"] = str(Path(tmp) / "cache")
        with FakeOpenAIServer(responder=make_responder(echo_request=True)) as server:
            cfg = load_config(None, {"llm.facets": f"openai:fake@{server.url}", "llm.cache": False})
            store = run_pipeline(data, Path(tmp) / "run", cfg, show_progress=False)
        convs = list(read_conversations(data, cfg.ingest))
        conv_tokens = sum(len(format_conversation(c, cfg.facets.max_conversation_tokens, scrub_text=True)) / 4 for c in convs)
    n = len(convs)
    tasks = store.manifest["llm_usage"]["tasks"]
    print(f"machine: {platform.platform()}, {os.cpu_count()} CPUs")
    print(f"{n:,} hh-rlhf conversations, {conv_tokens / n:.0f} tokens each on average (characters / 4)\n")
    print(f"{'task':<16}{'calls':>8}{'calls/conv':>12}{'input tok/conv':>16}{'output tok/conv':>17}")
    groups = {"facets": ["facets"], "naming": ["name"], "hierarchy": ["propose_parents", "dedupe_parents", "assign", "rename"], "audit": ["audit"]}
    for group, names in groups.items():
        for task in names:
            t = tasks.get(task)
            if t:
                print(f"{task:<16}{t['calls']:>8,}{t['calls'] / n:>12.3f}{t['input_tokens'] / n:>16.1f}{t['output_tokens'] / n:>17.1f}   ({group})")
    facets = tasks["facets"]
    overhead = (facets["input_tokens"] - conv_tokens) / n
    print(f"\nfacets: {overhead:.0f} tokens of prompt around each conversation, so a 1,000-token conversation costs about "
          f"{1000 + overhead:.0f} input tokens for ALL {len(cfg.facets.custom) + 4} facets in one call "
          f"(the paper: about 1,300 per facet, one call per facet, so about 5,200 for four)")
    total_calls = sum(t["calls"] for t in tasks.values())
    print(f"all tasks: {total_calls / n:.3f} calls per conversation; naming + hierarchy + audit: "
          f"{sum(t['calls'] for k, t in tasks.items() if k != 'facets') / n:.3f} calls per conversation")


if __name__ == "__main__":
    main()
