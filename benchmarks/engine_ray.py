"""The Ray engine against the local engine: time per stage at N conversations, extractive mode.

    python benchmarks/engine_ray.py --sizes 10000
    python benchmarks/engine_ray.py --sizes 10000 --engines ray --files 4 --shard 2500
    python benchmarks/engine_ray.py --table-rows 1000000 10000000   # one Parquet file per artifact: how far it goes

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
import resource
import subprocess
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


def table_io(rows: int) -> dict:
    """Write and read back a `conversations` table of `rows` rows (the widest per-conversation artifact: its
    columns as ingest writes them, with 32-hex keyed account hashes) through RunStore, as one Parquet file.
    Run in a fresh process so its peak memory is its own."""
    import numpy as np
    import pyarrow as pa

    from convoscope.store import RunStore

    rng = np.random.default_rng(0)
    accounts = np.array([f"{i:032x}" for i in rng.integers(0, 2**62, size=max(1, rows // 50))])
    table = pa.table({
        "conv_id": pa.array([f"part-{i // 1_000_000:03d}.jsonl:{i}" for i in range(rows)]),
        "account": pa.array(accounts[rng.integers(0, len(accounts), size=rows)]),
        "created_at": pa.array(np.datetime64("2026-01-01", "us") + rng.integers(0, 86_400 * 10**6 * 90, size=rows).astype("timedelta64[us]")).cast(pa.timestamp("us", tz="UTC")),
        "n_messages": pa.array(rng.integers(1, 20, size=rows).astype(np.int32)),
        "n_turns": pa.array(rng.integers(1, 10, size=rows).astype(np.int32)),
        "user_chars": pa.array(rng.integers(10, 5000, size=rows).astype(np.int32)),
        "assistant_chars": pa.array(rng.integers(10, 5000, size=rows).astype(np.int32)),
        "metadata": pa.array(["{}"] * rows),
    })
    built_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    with tempfile.TemporaryDirectory() as tmp:
        store = RunStore(Path(tmp) / "run", create=True)
        cpu, wall = time.process_time(), time.perf_counter()
        store.write_table("conversations", table)
        write = (time.process_time() - cpu, time.perf_counter() - wall)
        size = (Path(tmp) / "run" / "conversations.parquet").stat().st_size
        del table
        cpu, wall = time.process_time(), time.perf_counter()
        back = store.read_table("conversations")
        read = (time.process_time() - cpu, time.perf_counter() - wall)
        in_memory = back.nbytes
        cpu, wall = time.process_time(), time.perf_counter()
        store.read_table("conversations", columns=["conv_id"])
        one_column = (time.process_time() - cpu, time.perf_counter() - wall)
    return {"rows": rows, "file_mb": size / 2**20, "arrow_mb": in_memory / 2**20, "write_cpu_s": write[0], "write_wall_s": write[1],
            "read_cpu_s": read[0], "read_wall_s": read[1], "read_conv_id_cpu_s": one_column[0],
            "peak_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, "built_peak_mb": built_rss / 2**20}


def main() -> None:
    if len(sys.argv) == 3 and sys.argv[1] == "--table-child":
        print(json.dumps(table_io(int(sys.argv[2]))))
        return
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000])
    parser.add_argument("--engines", nargs="+", default=["local", "ray"], choices=["local", "ray"])
    parser.add_argument("--files", type=int, default=2, help="input files (the Ray engine's unit of parallel reading)")
    parser.add_argument("--shard", type=int, default=5000, help="engine.shard_conversations")
    parser.add_argument("--table-rows", type=int, nargs="+", help="only measure one Parquet file per per-conversation artifact at these rows")
    args = parser.parse_args()
    print(f"machine: {platform.platform()}, {os.cpu_count()} CPUs, Python {platform.python_version()}")
    if args.table_rows:
        for rows in args.table_rows:
            load = os.getloadavg()[0]
            out = json.loads(subprocess.run([sys.executable, __file__, "--table-child", str(rows)], check=True, capture_output=True, text=True).stdout)
            print(f"{rows:>12,} rows: file {out['file_mb']:,.0f} MB (Arrow in memory {out['arrow_mb']:,.0f} MB); write {out['write_cpu_s']:.1f} CPU s "
                  f"({out['write_wall_s']:.1f} s wall), read {out['read_cpu_s']:.1f} CPU s ({out['read_wall_s']:.1f} s wall), conv_id column alone "
                  f"{out['read_conv_id_cpu_s']:.1f} CPU s; process peak {out['peak_mb']:,.0f} MB (after building the table: {out['built_peak_mb']:,.0f} MB); "
                  f"load average {load:.1f}")
        return
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
                blocks = manifest["stages"].get("cluster", {}).get("assigned_blocks")
                if blocks:
                    print(f"  (cluster: {blocks} blocks of rows assigned to their centroids on Ray workers)")
            if len(args.engines) == 2:
                from convoscope.store import RunStore

                same = all(RunStore(where / "run-local").read_table(t).equals(RunStore(where / "run-ray").read_table(t))
                           for t in ("conversations", "facets", "base_assignments"))
                print(f"\n  same conversations, facets and base clusters on both engines: {same}")


if __name__ == "__main__":
    main()
