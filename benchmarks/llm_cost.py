"""LLM tokens and dollars per conversation: live, live with prompt caching, and batch with caching.

    python benchmarks/llm_cost.py [--n 1000] [--model claude-3-5-haiku-20241022] [--per-call 4,1]

`--per-call` runs once per value of `facets.conversations_per_call` (conversations sharing one facets
call; the fake answers each conversation of a shared call on its own: tests/fakes/shared_calls.py).

Runs the whole pipeline in LLM mode with `--batch` on N real hh-rlhf dialogues against the fake
Anthropic server (tests/fakes: Messages API, Message Batches API, prompt caching as the real API reports
it, with the model's minimum cacheable prefix), so the batch path runs end to end. Tokens are the fake's
count (JSON characters / 4 of what the client sent, tools and system included), so the figures are about
our prompt sizes and call counts, not a real tokenizer. Dollars at Claude 3.5 Haiku list prices
($0.80/M input, $4/M output; cache writes 1.25x input, reads 0.1x; batch 50%), per 100,000 conversations:

- live: every input token at the input price (no cache);
- live + caching: the cache reads and writes the fake reported, with the model's minimum prefix;
- batch + caching: the ledger's own cost of this run (facets, screener and audits at the batch price;
  naming and the hierarchy live);
- the same two again "if the prefix were cacheable": the run's request bodies replayed through a fake
  with no minimum, to show what caching would save on a model (or a longer prefix) that caches it.
"""

from __future__ import annotations

import argparse
import gzip
import os
import platform
import sys
import tempfile
from collections import defaultdict
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
HH = ROOT.parent / "shared" / "data" / "hh-rlhf-harmless" / "harmless-base-test.jsonl.gz"
PRICE_IN, PRICE_OUT = 0.80, 4.00  # Claude 3.5 Haiku, USD per 1M tokens
WRITE, READ, BATCH = 1.25, 0.10, 0.5
PER = 100_000


def dollars(fresh: float, write: float, read: float, output: float) -> float:
    return (fresh * PRICE_IN + write * PRICE_IN * WRITE + read * PRICE_IN * READ + output * PRICE_OUT) / 1e6


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--n", type=int, default=1000)
    parser.add_argument("--model", default="claude-3-5-haiku-20241022")
    parser.add_argument("--per-call", default="4,1", help="facets.conversations_per_call values, comma-separated (one run each)")
    args = parser.parse_args()
    print(f"machine: {platform.platform()}, {os.cpu_count()} CPUs (shared with other work)")
    for per_call in [int(v) for v in args.per_call.split(",")]:
        print(f"\n=== facets.conversations_per_call = {per_call} ===")
        measure(args, per_call)


def measure(args: argparse.Namespace, per_call: int) -> None:
    from fakes.clio_responder import make_responder
    from fakes.llm_servers import FakeAnthropicServer, approx_tokens
    from fakes.shared_calls import answer_shared_calls

    from convoscope.config import load_config
    from convoscope.conversation_format import format_conversation
    from convoscope.ingest import read_conversations
    from convoscope.llm.backends.anthropic import cache_min_tokens
    from convoscope.pipeline import run_pipeline

    responder = answer_shared_calls(make_responder(echo_request=True))
    with tempfile.TemporaryDirectory() as tmp, gzip.open(HH, "rt", encoding="utf-8") as fh:
        data = Path(tmp) / "hh.jsonl"
        data.write_text("".join(line for _, line in zip(range(args.n), fh)))
        os.environ["CONVOSCOPE_CACHE_DIR"] = str(Path(tmp) / "cache")
        with FakeAnthropicServer(responder=responder) as server:
            cfg = load_config(None, {"llm.facets": f"anthropic:{args.model}@{server.url}", "llm.cache": False, "llm.batch": True,
                                     "llm.batch_poll_s": 0.05, "llm.max_concurrency": 8,
                                     "facets.conversations_per_call": per_call})
            store = run_pipeline(data, Path(tmp) / "run", cfg, show_progress=False)
            batch_bodies = [params for batch in server.batches.values() for _, params in batch["items"]]
            live_bodies = [b for b in server.requests if "messages" in b and "requests" not in b]
        n = store.read_table("facets").num_rows
        usage = store.manifest["llm_usage"]
        # the conversations as the facet prompt carries them, counted as the fake counts (JSON characters / 4)
        conversation_tokens = sum(
            approx_tokens(format_conversation(c, cfg.facets.max_conversation_tokens, scrub_text=cfg.privacy.scrub_identifiers))
            for c in read_conversations(data, cfg.ingest)
        )

    # the bodies grouped by their static system prompt: one group per task (B's prompts put every static part there)
    def system_text(body: dict[str, Any]) -> str:
        system = body.get("system", "")
        return system if isinstance(system, str) else "".join(block.get("text", "") for block in system)

    groups: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for body in batch_bodies + live_bodies:
        groups[system_text(body)].append(body)
    replay = FakeAnthropicServer(responder=responder, cache_min_tokens=0)  # no minimum: every repeated prefix is cached
    hypothetical = [replay.message(body, "replay")["usage"] for body in batch_bodies + live_bodies]
    in_batch = [True] * len(batch_bodies) + [False] * len(live_bodies)

    print(f"{n:,} hh-rlhf conversations, model {args.model} (minimum cacheable prefix {cache_min_tokens(args.model):,} tokens), "
          f"{len(batch_bodies):,} requests in batches, {len(live_bodies):,} live\n")
    print(f"{'prompt (system, first words)':<44}{'calls':>7}{'static prefix':>15}{'item':>7}{'output':>8}   (tokens per call)")
    for system, bodies in sorted(groups.items(), key=lambda kv: -len(kv[1])):
        prefix = sum(approx_tokens(b.get("tools", [])) + approx_tokens(system_text(b)) if b.get("tools") else approx_tokens(system_text(b)) for b in bodies)
        item = sum(approx_tokens(b.get("messages", [])) for b in bodies)
        output = sum(approx_tokens(responder(b)) for b in bodies)
        label = " ".join(system.split()[:6])[:42] or "(no system prompt)"
        print(f"{label:<44}{len(bodies):>7}{prefix / len(bodies):>15.0f}{item / len(bodies):>7.0f}{output / len(bodies):>8.0f}")

    tasks = usage["tasks"]
    total_in = sum(t["input_tokens"] for t in tasks.values())
    total_out = sum(t["output_tokens"] for t in tasks.values())
    facets = tasks["facets"]
    from convoscope import prompts

    opening = prompts.render("facets_system")[:80]  # single and shared facets calls both start with it
    facet_bodies = [b for b in batch_bodies + live_bodies if system_text(b).startswith(opening)]
    facet_prefix = sum(approx_tokens(b.get("tools", [])) + approx_tokens(system_text(b)) for b in facet_bodies) / len(facet_bodies)
    overhead = (facets["input_tokens"] - conversation_tokens) / n
    print(f"\nfacets: {facets['calls']:,} calls for {n:,} conversations ({n / facets['calls']:.2f} a call); per conversation "
          f"{conversation_tokens / n:.0f} tokens of conversation, {overhead:.0f} tokens of prompt around it, of which "
          f"{facet_prefix * len(facet_bodies) / n:.0f} static prefix ({facet_prefix:.0f} a call)")
    print(f"per conversation: {total_in / n:.0f} input tokens ({facets['input_tokens'] / n:.0f} in facets calls), "
          f"{total_out / n:.0f} output tokens ({facets['output_tokens'] / n:.0f} from facets)")

    total = usage["total"]
    read, write = total["cache_read_tokens"], total["cache_write_tokens"]
    live = dollars(total_in, 0, 0, total_out) / n * PER
    cached = dollars(total_in - read - write, write, read, total_out) / n * PER
    batch_measured = total["cost_usd"] / n * PER  # the ledger's own figure for this run

    def replayed(batch: bool) -> float:
        cost = 0.0
        for u, batched in zip(hypothetical, in_batch):
            c = dollars(u["input_tokens"], u["cache_creation_input_tokens"], u["cache_read_input_tokens"], u["output_tokens"])
            cost += c * (BATCH if batch and batched else 1.0)
        return cost / n * PER

    rows = [
        ("live", live, total_in),
        (f"live + caching ({args.model} minimum)", cached, total_in - read * (1 - READ) + write * (WRITE - 1)),
        (f"batch + caching ({args.model} minimum)", batch_measured, None),
        ("live + caching, if the prefix were cacheable", replayed(False), None),
        ("batch + caching, if the prefix were cacheable", replayed(True), None),
    ]
    print(f"\ncache tokens this run: {read / n:.0f} read, {write / n:.0f} written per conversation")
    print(f"\n{'USD per 100,000 conversations at Claude 3.5 Haiku list prices':<62}{'USD':>9}{'effective input tok/conv':>26}")
    for label, cost, effective in rows:
        print(f"{label:<62}{cost:>9.2f}{(f'{effective / n:.0f}' if effective is not None else ''):>26}")


if __name__ == "__main__":
    main()
