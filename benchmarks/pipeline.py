"""End-to-end extractive pipeline benchmark: time per stage and peak memory at N conversations.

    python benchmarks/pipeline.py --sizes 10000 100000
    python benchmarks/pipeline.py --sizes 1000000      # about 25 minutes on 2 idle cores

Builds N single-prompt conversations from the shared CLINC150 and BANKING77 texts (real user
requests; repeated texts get a short varied suffix so that deduplication keeps them), with 2,000
accounts and timestamps, then runs `convoscope run` in a fresh process per size and prints the
manifest's stage timings. The embedding cache is disabled so every vector is computed.

Peak memory is the largest sum of resident memory over the run's process and its children (the
embedding workers), sampled from /proc every 0.2 s (shared library pages counted once per process,
so it errs high), next to the largest single process (getrusage). The load average before and after
says how busy the machine was: wall times on a shared machine are only as good as that.
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
import threading
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


def _tree_rss_bytes(root: int) -> int:
    """Resident memory of `root` and all its descendants, from /proc (Linux)."""
    children: dict[int, list[int]] = {}
    rss: dict[int, int] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as fh:
                fields = fh.read().rpartition(")")[2].split()
        except OSError:
            continue
        pid = int(entry)
        children.setdefault(int(fields[1]), []).append(pid)  # fields[1]: the parent's pid
        rss[pid] = int(fields[21]) * resource.getpagesize()  # fields[21]: resident pages
    total, stack = 0, [root]
    while stack:
        pid = stack.pop()
        total += rss.get(pid, 0)
        stack.extend(children.get(pid, []))
    return total


def run_measured(command: list[str]) -> tuple[subprocess.CompletedProcess, float, int]:
    """Run `command`; its result, CPU seconds (its own and its children's) and peak process-tree RSS."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    peak = 0
    with subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) as proc:
        done = threading.Event()

        def sample() -> None:
            nonlocal peak
            while not done.wait(0.2):
                peak = max(peak, _tree_rss_bytes(proc.pid))

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        stdout, stderr = proc.communicate()
        done.set()
        sampler.join()
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return subprocess.CompletedProcess(command, proc.returncode, stdout, stderr), cpu, peak


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000], help="conversations per run (e.g. 1000000)")
    parser.add_argument("--keep", type=Path, help="keep each run directory (and input) under this directory, as N/")
    args = parser.parse_args()
    print(f"machine: {platform.platform()}, {os.cpu_count()} CPUs, Python {platform.python_version()}")
    for n in args.sizes:
        with tempfile.TemporaryDirectory() as tmp:
            where = args.keep / str(n) if args.keep else Path(tmp)
            where.mkdir(parents=True, exist_ok=True)
            data = where / "input.jsonl"
            build_input(n, data)
            run_dir = where / "run"
            load_before = os.getloadavg()
            started = time.perf_counter()
            result, cpu, tree_peak = run_measured([sys.executable, "-m", "convoscope", "run", str(data), "--out", str(run_dir),
                                                   "--quiet", "--no-cache"])
            wall = time.perf_counter() - started
            if result.returncode != 0:
                print(result.stderr)
                raise SystemExit(1)
            process_peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024
            manifest = json.loads((run_dir / "manifest.json").read_text())
            stages = {k: v["seconds"] for k, v in manifest["stages"].items()}
            order = ["ingest", "facets", "embed", "cluster", "name", "hierarchy", "privacy", "map", "aggregates"]
            # the sampler can miss a short peak on a busy machine: the largest single process bounds it from below
            peak = max(tree_peak, process_peak)
            print(f"\n{n:,} conversations: {wall:.1f} s wall, {cpu:.0f} CPU s, peak memory {peak / 2**20:,.0f} MB "
                  f"(all processes; largest single process {process_peak / 2**20:,.0f} MB), "
                  f"{manifest['stages']['cluster']['k']} base clusters, levels {manifest['stages']['hierarchy']['sizes']}")
            print(f"  load average before {load_before[0]:.1f}, after {os.getloadavg()[0]:.1f} (1-minute, {os.cpu_count()} CPUs)")
            for name in order:
                if name in stages:
                    print(f"  {name:<11} {stages[name]:8.1f} s")


if __name__ == "__main__":
    main()
