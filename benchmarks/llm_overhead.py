"""Overhead of the LLM client: N calls against a fake OpenAI-compatible server with a fixed latency L,
at concurrency C, cache off. A client with no overhead would take N * L / C; the ratio shows ours.

    python benchmarks/llm_overhead.py [--calls 5000] [--latency 0.05] [--concurrency 8 64 256]

The fake server runs in its own process, so it does not compete with the client for the GIL.
"""

from __future__ import annotations

import argparse
import asyncio
import subprocess
import sys
import time
from pathlib import Path

from convoscope.llm import ChatMessage, LLMRequest, LLMSettings, build_client

ROOT = Path(__file__).resolve().parents[1]


def start_server(latency: float) -> tuple[subprocess.Popen, str]:
    process = subprocess.Popen(
        [sys.executable, str(ROOT / "tests/fakes/llm_servers.py"), "openai", "--latency", str(latency)],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert process.stdout is not None
    return process, process.stdout.readline().strip()


async def measure(url: str, calls: int, concurrency: int) -> float:
    settings = LLMSettings(facets=f"openai:bench@{url}", cache=False, max_concurrency=concurrency)
    client = build_client(settings, progress=False)
    requests = [LLMRequest(messages=(ChatMessage("user", f"question {i}"),), max_tokens=64) for i in range(calls)]
    await client.complete_many(requests[: concurrency * 2])  # warm the connection pool
    start = time.perf_counter()
    responses = await client.complete_many(requests)
    elapsed = time.perf_counter() - start
    await client.aclose()
    assert not any(r.failed for r in responses)
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--calls", type=int, default=5000)
    parser.add_argument("--latency", type=float, default=0.05)
    parser.add_argument("--concurrency", type=int, nargs="+", default=[8, 64, 256])
    args = parser.parse_args()
    process, url = start_server(args.latency)
    try:
        print(f"N={args.calls} calls, latency L={args.latency * 1000:.0f} ms, cache off")
        print(f"{'C':>5} {'wall s':>8} {'bound N*L/C':>12} {'ratio':>6} {'calls/s':>8}")
        for concurrency in args.concurrency:
            elapsed = asyncio.run(measure(url, args.calls, concurrency))
            bound = args.calls * args.latency / concurrency
            print(f"{concurrency:>5} {elapsed:>8.2f} {bound:>12.2f} {elapsed / bound:>6.2f} {args.calls / elapsed:>8.0f}")
    finally:
        process.terminate()
        process.wait()


if __name__ == "__main__":
    main()
