"""Overhead of the LLM client: N calls against a fake OpenAI-compatible server with a fixed latency L,
at concurrency C. A client with no overhead would take N * L / C; the ratio shows ours. The client's
own CPU per call is this process's CPU time (user + system) over N: the fake server runs in its own
process, so it is not counted and does not compete with the client for the GIL.

    python benchmarks/llm_overhead.py [--calls 5000] [--latency 0.05] [--concurrency 8 64 256] [--cache] [--schema]

`--cache` turns the response cache on (a fresh one: every call a miss and a write), `--schema` makes
every request a structured one (JSON schema validation of every answer), `--profile FILE` writes a
cProfile of the last concurrency level.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import subprocess
import sys
import tempfile
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


SCHEMA = {
    "type": "object",
    "properties": {"summary": {"type": "string"}, "concerning": {"type": "integer", "minimum": 1, "maximum": 5},
                   "language": {"type": "string"}},
    "required": ["summary", "concerning", "language"],
    "additionalProperties": False,
}


async def measure(url: str, calls: int, concurrency: int, *, cache_dir: Path | None, schema: bool,
                  profiler: cProfile.Profile | None) -> tuple[float, float]:
    settings = LLMSettings(facets=f"openai:bench@{url}", cache=cache_dir is not None, cache_dir=cache_dir, max_concurrency=concurrency)
    client = build_client(settings, progress=False)
    requests = [LLMRequest(messages=(ChatMessage("user", f"question {i} at {concurrency}"),), system="Answer briefly.", max_tokens=64,
                           json_schema=SCHEMA if schema else None) for i in range(calls)]
    warm = [LLMRequest(messages=(ChatMessage("user", f"warm {i}"),), max_tokens=64) for i in range(concurrency * 2)]
    await client.complete_many(warm)  # open the connection pool
    cpu, start = time.process_time(), time.perf_counter()
    if profiler is not None:
        profiler.enable()
    responses = await client.complete_many(requests)
    await client.aclose()  # flushes what the client still holds (e.g. cache writes): part of the cost
    if profiler is not None:
        profiler.disable()
    elapsed, cpu = time.perf_counter() - start, time.process_time() - cpu
    assert not any(r.failed for r in responses)
    return elapsed, cpu


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--calls", type=int, default=5000)
    parser.add_argument("--latency", type=float, default=0.05)
    parser.add_argument("--concurrency", type=int, nargs="+", default=[8, 64, 256])
    parser.add_argument("--cache", action="store_true", help="response cache on (a fresh one per level)")
    parser.add_argument("--schema", action="store_true", help="structured requests (schema validation)")
    parser.add_argument("--profile", type=Path, help="write a cProfile of the last level here")
    args = parser.parse_args()
    process, url = start_server(args.latency)
    try:
        print(f"N={args.calls} calls, latency L={args.latency * 1000:.0f} ms, cache {'on' if args.cache else 'off'}, "
              f"{'structured (schema-validated)' if args.schema else 'free-text'} answers")
        print(f"{'C':>5} {'wall s':>8} {'bound N*L/C':>12} {'ratio':>6} {'calls/s':>8} {'client CPU ms/call':>19}")
        for level, concurrency in enumerate(args.concurrency):
            profiler = cProfile.Profile() if args.profile and level == len(args.concurrency) - 1 else None
            with tempfile.TemporaryDirectory() as tmp:
                elapsed, cpu = asyncio.run(measure(url, args.calls, concurrency, cache_dir=Path(tmp) if args.cache else None,
                                                   schema=args.schema, profiler=profiler))
            bound = args.calls * args.latency / concurrency
            print(f"{concurrency:>5} {elapsed:>8.2f} {bound:>12.2f} {elapsed / bound:>6.2f} {args.calls / elapsed:>8.0f} {cpu / args.calls * 1000:>19.2f}")
            if profiler is not None:
                profiler.dump_stats(args.profile)
    finally:
        process.terminate()
        process.wait()


if __name__ == "__main__":
    main()
