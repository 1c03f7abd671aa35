"""Ingest benchmark: throughput (conversations/s) and peak memory of `read_conversations` on OpenAI JSONL.

Builds 100,000 multi-turn conversations from the shared clinc150 + banking77 texts (with user ids and
timestamps), then reads the first 10k and all 100k. Flat peak memory between the two shows streaming.

    python benchmarks/ingest.py [--data ../shared/data] [--n 100000]
"""

from __future__ import annotations

import argparse
import os
import platform
import random
import resource
import tempfile
import time
import tracemalloc
from pathlib import Path

import orjson

from convoscope.ingest import IngestOptions, IngestReport, read_conversations

DEFAULT_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


def load_texts(data: Path) -> list[str]:
    texts = []
    for rel in ("clinc150/clinc150.jsonl", "banking77/banking77.jsonl"):
        with open(data / rel, "rb") as f:
            texts.extend(orjson.loads(line)["text"] for line in f)
    return texts


def build(path: Path, n: int, texts: list[str]) -> None:
    rng = random.Random(0)
    t0 = 1_700_000_000
    with open(path, "wb") as f:
        for i in range(n):
            turns = rng.randint(1, 3)  # 2-6 messages
            messages = []
            for _ in range(turns):
                messages.append({"role": "user", "content": rng.choice(texts)})
                messages.append({"role": "assistant", "content": f"Sure. {rng.choice(texts)} {rng.choice(texts)}"})
            rec = {"id": f"conv-{i}", "user": f"user-{rng.randrange(n // 10)}", "created_at": t0 + i * 7,
                   "metadata": {"source": "bench"}, "messages": messages}
            f.write(orjson.dumps(rec) + b"\n")


def throughput(path: Path, options: IngestOptions) -> tuple[int, float, float]:
    """(conversations, wall seconds, CPU seconds): CPU time stays meaningful on a busy shared machine."""
    wall, cpu = time.perf_counter(), time.process_time()
    count = sum(1 for _ in read_conversations(path, options))
    return count, time.perf_counter() - wall, time.process_time() - cpu


def peak_memory(path: Path, options: IngestOptions) -> int:
    """Peak Python heap while reading everything (tracemalloc; slower, so timed separately)."""
    tracemalloc.start()
    try:
        for _ in read_conversations(path, options, IngestReport()):
            pass
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=DEFAULT_DATA if DEFAULT_DATA.is_dir() else Path("/work/shared/data"))
    ap.add_argument("--n", type=int, default=100_000)
    ap.add_argument("--repeat", type=int, default=3, help="throughput runs per size; the best is reported")
    args = ap.parse_args()

    print(f"machine: {platform.platform()}, {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, "
          f"Python {platform.python_version()}")
    texts = load_texts(args.data)
    with tempfile.TemporaryDirectory() as tmp:
        full = Path(tmp) / "bench.jsonl"
        build(full, args.n, texts)
        small = Path(tmp) / "bench_small.jsonl"
        with open(full, "rb") as src, open(small, "wb") as dst:
            dst.writelines(line for _, line in zip(range(args.n // 10), src))
        print(f"{'conversations':>13} {'MB':>6} {'conv/s wall':>12} {'conv/s CPU':>11} {'peak MB (dedupe)':>17} "
              f"{'peak MB (no dedupe)':>20}")
        peaks = []
        for path in (small, full):
            runs = [throughput(path, IngestOptions()) for _ in range(args.repeat)]
            count, wall, cpu = min(runs, key=lambda r: r[1])
            peak = peak_memory(path, IngestOptions())
            peak_nodedupe = peak_memory(path, IngestOptions(dedupe=False))
            peaks.append((count, peak))
            print(f"{count:>13,} {path.stat().st_size / 1e6:>6.1f} {count / wall:>12,.0f} {count / cpu:>11,.0f} "
                  f"{peak / 1e6:>17.1f} {peak_nodedupe / 1e6:>20.1f}")
        (n0, p0), (n1, p1) = peaks
        # What grows is only the per-conversation hash sets (content dedupe, id uniqueness, accounts).
        print(f"memory growth: {(p1 - p0) / (n1 - n0):.0f} bytes per conversation (hash sets)")
    print(f"process max RSS: {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MB")


if __name__ == "__main__":
    main()
