"""CPU seconds of the name and hierarchy stages (and privacy, which decides what is withheld) on a finished
run, and a check that their artifacts come out identical to the run's own.

    python benchmarks/name_hierarchy_speed.py RUN                 # e.g. a run kept by benchmarks/pipeline.py --keep
    python benchmarks/name_hierarchy_speed.py RUN --profile 25    # plus the 25 costliest functions per stage (cProfile)
    python benchmarks/name_hierarchy_speed.py RUN --stages name --embed-read   # naming as inside a whole run

The run directory is not touched: its manifest and the upstream artifacts the three stages read are copied
(the embeddings are linked) into a scratch directory, the stages' work functions run there in this process
on the run's own config and input (raw text is re-read from the input, as in a run), and every artifact
they write is compared, row for row and value for value, with the run's: names, descriptions, term counts,
the hierarchy, assignments and the privacy stage's published / withheld decisions. The exit status is 1
when any differs. So running this on a run made by an older commit checks that a change kept the outputs.

CPU seconds are this process's (time.process_time: all its threads); wall seconds are printed next to the
load average, which says how busy the shared machine was.
"""

from __future__ import annotations

import argparse
import cProfile
import io
import json
import os
import pstats
import shutil
import sys
import tempfile
import time
from pathlib import Path

import pyarrow as pa

UPSTREAM = ["manifest.json", "conversations.parquet", "facets.parquet", "base_assignments.parquet", "base_centroids.npy"]
LINKED = ["embeddings.npy"]  # large and only read (memory-mapped)
COMPARED = {"name": ["base_clusters", "base_term_counts"], "hierarchy": ["hierarchy", "assignments"], "privacy": ["clusters"]}


def scratch_copy(run: Path, where: Path, stages: list[str]) -> None:
    # the outputs of the stages not rerun that a rerun one reads (e.g. the names, for --stages hierarchy,privacy)
    earlier = [f"{a}.parquet" for stage in ("name", "hierarchy") if stage not in stages for a in COMPARED[stage]]
    for name in UPSTREAM + earlier:
        if (run / name).exists():
            shutil.copy2(run / name, where / name)
    for name in LINKED:
        os.symlink((run / name).resolve(), where / name)


def same_table(a: pa.Table, b: pa.Table) -> str | None:
    """None when equal, else what differs (first differing column and row)."""
    if a.column_names != b.column_names:
        return f"columns {a.column_names} != {b.column_names}"
    if a.num_rows != b.num_rows:
        return f"{a.num_rows} rows != {b.num_rows}"
    for col in a.column_names:
        x, y = a.column(col).to_pylist(), b.column(col).to_pylist()
        if x != y:
            row = next(i for i, (u, v) in enumerate(zip(x, y)) if u != v)
            return f"column {col!r} row {row}: {str(x[row])[:80]!r} != {str(y[row])[:80]!r}"
    return None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run", type=Path, help="a finished extractive run directory")
    parser.add_argument("--input", type=Path, help="its input (default: the path in its manifest)")
    parser.add_argument("--stages", default="name,hierarchy,privacy", help="comma-separated, in order (default: %(default)s)")
    parser.add_argument("--profile", type=int, default=0, metavar="N", help="print the N costliest functions of each stage (cProfile, in CPU seconds)")
    parser.add_argument("--embed-read", action="store_true",
                        help="first read the texts as the embed stage of a whole run does (not timed), so the name stage takes them "
                             "from memory as in `convoscope run`; without it the name stage re-reads the input, as a resumed run does")
    parser.add_argument("--keep", type=Path, help="write the scratch run here (default: a temporary directory, removed)")
    args = parser.parse_args()

    from convoscope.config import Config
    from convoscope.context import RunContext
    from convoscope.stages.hierarchy import HIERARCHY
    from convoscope.stages.naming import NAME
    from convoscope.stages.privacy import PRIVACY
    from convoscope.store import RunStore

    stages = {"name": NAME, "hierarchy": HIERARCHY, "privacy": PRIVACY}
    manifest = json.loads((args.run / "manifest.json").read_text())
    config = Config.model_validate(manifest["config"])
    input_path = args.input or Path(manifest["input"])
    print(f"run {args.run}: {manifest['stages']['facets']['rows']:,} conversations, {manifest['stages']['cluster']['k']:,} base clusters, "
          f"mode {manifest['mode']}; input {input_path}")
    print(f"load average before: {os.getloadavg()[0]:.1f} (1-minute, {os.cpu_count()} CPUs)")
    tmp = None
    if args.keep:
        args.keep.mkdir(parents=True, exist_ok=False)
        where = args.keep
    else:
        tmp = tempfile.TemporaryDirectory(prefix="name-hierarchy-")
        where = Path(tmp.name)
    failed = False
    try:
        scratch_copy(args.run, where, args.stages.split(","))
        ctx = RunContext(config=config, store=RunStore(where), input_path=input_path, show_progress=False)
        if args.embed_read:
            from convoscope.analysis_text import analysis_texts

            cpu = time.process_time()
            n = sum(1 for _ in analysis_texts(ctx))
            print(f"  (the embed stage's read of {n:,} texts, not counted below: {time.process_time() - cpu:.1f} CPU s)")
        for name in args.stages.split(","):
            profiler = cProfile.Profile(time.process_time) if args.profile else None  # CPU time: the machine is shared
            cpu, wall = time.process_time(), time.perf_counter()
            if profiler:
                profiler.enable()
            out = stages[name].work(ctx)
            if profiler:
                profiler.disable()
            cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
            print(f"  {name:<10} {cpu:8.1f} CPU s {wall:8.1f} s wall (load {os.getloadavg()[0]:.1f}; recorded in the run: "
                  f"{manifest['stages'][name]['seconds']:.1f} s wall)")
            for key in out.artifacts:
                artifact = key.partition(":")[2]
                if artifact in COMPARED.get(name, []):
                    diff = same_table(ctx.store.read_table(artifact), RunStore(args.run).read_table(artifact))
                    print(f"    {artifact:<17} {'identical to the run' if diff is None else 'DIFFERS: ' + diff}")
                    failed |= diff is not None
            if profiler:
                text = io.StringIO()
                pstats.Stats(profiler, stream=text).sort_stats("cumulative").print_stats(args.profile)
                print("\n".join(line for line in text.getvalue().splitlines() if line.strip())[:20000])
    finally:
        if tmp is not None:
            tmp.cleanup()
    print(f"load average after: {os.getloadavg()[0]:.1f}")
    if failed:
        print("OUTPUTS DIFFER from the run's")
        sys.exit(1)


if __name__ == "__main__":
    main()
