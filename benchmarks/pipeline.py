"""End-to-end extractive pipeline benchmark: time per stage and peak memory at N conversations.

    python benchmarks/pipeline.py --sizes 10000 100000

Builds N single-prompt conversations from the shared CLINC150 and BANKING77 texts (real user
requests; repeated texts get a short varied suffix so that deduplication keeps them), with 2,000
accounts and timestamps, then runs `convoscope run` in a fresh process per size (so peak memory is
per run) and prints the manifest's stage timings. The embedding cache is disabled so every vector is
computed.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import resource
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"
SUFFIXES = ["", " please", " thanks", " asap", " right now", " today", " for me", " again", " quickly", " if possible"]


def build_input(n: int, path: Path, seed: int = 0) -> None:
    texts = []
    for name in ("clinc150/clinc150.jsonl", "banking77/banking77.jsonl"):
        with open(SHARED / name, encoding="utf-8") as fh:
            texts.extend(json.loads(line)["text"] for line in fh)
    rng = random.Random(seed)
    start = datetime(2026, 1, 1, tzinfo=timezone.utc)
    with open(path, "w", encoding="utf-8") as out:
        for i in range(n):
            base = texts[i % len(texts)]
            text = base + SUFFIXES[(i // len(texts)) % len(SUFFIXES)] + ("" if i < len(texts) * len(SUFFIXES) else f" #{i}")
            out.write(json.dumps({"id": f"c{i}", "user": f"acct-{rng.randrange(2000)}",
                                  "created_at": (start + timedelta(minutes=rng.randrange(60 * 24 * 90))).isoformat(),
                                  "messages": [{"role": "user", "content": text}]}) + "\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000])
    args = parser.parse_args()
    print(f"machine: {platform.platform()}, {os.cpu_count()} CPUs, Python {platform.python_version()}")
    for n in args.sizes:
        with tempfile.TemporaryDirectory() as tmp:
            data = Path(tmp) / "input.jsonl"
            build_input(n, data)
            run_dir = Path(tmp) / "run"
            started = time.perf_counter()
            before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
            result = subprocess.run([sys.executable, "-m", "convoscope", "run", str(data), "--out", str(run_dir), "--quiet", "--no-cache"],
                                    capture_output=True, text=True)
            wall = time.perf_counter() - started
            if result.returncode != 0:
                print(result.stderr)
                raise SystemExit(1)
            peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
            manifest = json.loads((run_dir / "manifest.json").read_text())
            stages = {k: v["seconds"] for k, v in manifest["stages"].items()}
            order = ["ingest", "facets", "embed", "cluster", "name", "hierarchy", "privacy", "map", "aggregates"]
            print(f"\n{n:,} conversations: {wall:.1f} s wall, peak RSS {max(peak, before) / 1024:.0f} MB "
                  f"({manifest['stages']['cluster']['k']} base clusters, levels {manifest['stages']['hierarchy']['sizes']})")
            for name in order:
                if name in stages:
                    print(f"  {name:<11} {stages[name]:8.1f} s")


if __name__ == "__main__":
    main()
