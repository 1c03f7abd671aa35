"""The Ray engine against the local engine: time per stage at N conversations, extractive mode.

    python benchmarks/engine_ray.py --sizes 10000
    python benchmarks/engine_ray.py --sizes 10000 --engines ray --files 4 --shard 2500

Same input as benchmarks/pipeline.py (CLINC150 + BANKING77 texts, 2,000 accounts), written as `--files`
JSONL files in a directory (the Ray engine reads files in parallel, and a shard never spans files), then
`convoscope run --engine E` in a fresh process per engine, embedding cache off, Ray started by the run
itself on this machine (`ray.init()` with every CPU). Prints wall time, CPU seconds and peak memory of the
process tree (Ray's raylet and workers included) and the manifest's stage timings. Checks that both
engines wrote the same base clusters. The load average says how busy the machine was.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from pipeline import build_input, run_measured  # noqa: E402

ORDER = ["ingest", "facets", "embed", "cluster", "name", "hierarchy", "privacy", "map", "aggregates"]


def split(source: Path, directory: Path, files: int) -> None:
    lines = source.read_text(encoding="utf-8").splitlines(keepends=True)
    directory.mkdir()
    per = -(-len(lines) // files)
    for i in range(files):
        (directory / f"part-{i:03d}.jsonl").write_text("".join(lines[i * per:(i + 1) * per]), encoding="utf-8")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000])
    parser.add_argument("--engines", nargs="+", default=["local", "ray"], choices=["local", "ray"])
    parser.add_argument("--files", type=int, default=2, help="input files (the Ray engine's unit of parallel reading)")
    parser.add_argument("--shard", type=int, default=5000, help="engine.shard_conversations")
    args = parser.parse_args()
    print(f"machine: {platform.platform()}, {os.cpu_count()} CPUs, Python {platform.python_version()}")
    for n in args.sizes:
        with tempfile.TemporaryDirectory() as tmp:
            where = Path(tmp)
            build_input(n, where / "input.jsonl")
            split(where / "input.jsonl", where / "input", args.files)
            (where / "engine.toml").write_text(f"[engine]\nshard_conversations = {args.shard}\n", encoding="utf-8")
            for engine in args.engines:
                run_dir = where / f"run-{engine}"
                load_before = os.getloadavg()
                started = time.perf_counter()
                result, cpu, peak = run_measured([sys.executable, "-m", "convoscope", "run", str(where / "input"), "--out", str(run_dir),
                                                  "--quiet", "--no-cache", "--engine", engine, "--config", str(where / "engine.toml")])
                wall = time.perf_counter() - started
                if result.returncode != 0:
                    print(result.stderr[-3000:])
                    raise SystemExit(1)
                manifest = json.loads((run_dir / "manifest.json").read_text())
                stages = {k: v["seconds"] for k, v in manifest["stages"].items()}
                print(f"\n{n:,} conversations, {args.files} files, engine {engine}: {wall:.1f} s wall (run's own {manifest['seconds']:.1f} s), "
                      f"{cpu:.0f} CPU s, peak memory {peak / 2**20:,.0f} MB (process tree)")
                print(f"  load average before {load_before[0]:.1f}, after {os.getloadavg()[0]:.1f} (1-minute, {os.cpu_count()} CPUs)")
                for name in ORDER:
                    if name in stages:
                        print(f"  {name:<11} {stages[name]:8.1f} s")
            if len(args.engines) == 2:
                from convoscope.store import RunStore

                same = all(RunStore(where / "run-local").read_table(t).equals(RunStore(where / "run-ray").read_table(t))
                           for t in ("conversations", "facets", "base_assignments"))
                print(f"\n  same conversations, facets and base clusters on both engines: {same}")


if __name__ == "__main__":
    main()
