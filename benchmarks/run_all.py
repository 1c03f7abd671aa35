"""Run every benchmark in turn and print what each measured (about 20-30 minutes on 2 cores).

    python benchmarks/run_all.py [--quick]

--quick uses smaller sizes (10,000 conversations only). The latest full output is kept in
docs/benchmarks.md. Run it on an otherwise idle machine: the numbers are wall-clock times.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    sizes = ["10000"] if args.quick else ["10000", "100000"]
    runs = [
        ["ingest.py", "--n", sizes[-1], "--repeat", "1" if args.quick else "3"],
        ["embedders.py", "--n", "3000" if args.quick else "6000"],
        ["pipeline.py", "--sizes", *sizes],
        ["llm_overhead.py", "--calls", "1000" if args.quick else "5000"],
        ["llm_cost.py", "--n", "300" if args.quick else "1000"],
        ["explorer.py", "--sizes", *sizes],
    ]
    failed = []
    for script, *rest in runs:
        print(f"\n$ python benchmarks/{script} {' '.join(rest)}", flush=True)
        if subprocess.run([sys.executable, str(HERE / script), *rest]).returncode != 0:
            failed.append(script)
    if failed:
        print(f"\nfailed: {', '.join(failed)}")
        raise SystemExit(1)


if __name__ == "__main__":
    main()
