"""Utility of the differential privacy mode against the threshold mode, printed as measured numbers.

    python benchmarks/dp_utility.py [--clinc-sample N] [--epsilons 0.5,1,2,4,8] [--repeats R] [--work DIR]

For CLINC150 (/work/shared/data/clinc150, or $CONVOSCOPE_CLINC150; no account ids, so every
conversation is its own account; gold labels: the 10 domains) and the bundled demo data (530 accounts;
gold labels: the metadata's arena-hard category, else its source), extractive mode: one threshold-mode
run, then for each epsilon a DP run into a copy of it (ingest, embeddings and map are reused: their
fingerprints do not change). Per run:

- published: share of all conversations whose base cluster is published;
- NMI: normalised mutual information between the gold labels and the top-level cluster of every
  conversation (conversations of withheld top-level clusters together as one "withheld" label);
- share MAE: mean absolute error, in percentage points, of the published share of every published
  cluster (all levels) against its true share of all conversations (0 in threshold mode: its shares
  are exact); DP sizes count at most `max_conversations_per_account` conversations per account;
- k: base clusters; top: published top-level clusters.

DP runs draw fresh noise (OpenDP takes no seed); `--repeats` runs each epsilon several times and
prints the mean and the range.
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import random
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from sklearn.metrics import normalized_mutual_info_score

from convoscope.config import load_config
from convoscope.pipeline import run_pipeline
from convoscope.store import RunStore

CLINC = Path(os.environ.get("CONVOSCOPE_CLINC150", "/work/shared/data/clinc150")) / "clinc150.jsonl"
DEMO = Path(__file__).resolve().parents[1] / "src" / "convoscope" / "data" / "demo.jsonl.gz"


def clinc_input(work: Path, sample: int | None) -> tuple[Path, dict[str, str]]:
    records = [json.loads(line) for line in CLINC.open(encoding="utf-8")]
    if sample and sample < len(records):
        records = random.Random(0).sample(records, sample)
    path = work / "clinc.jsonl"
    text = "".join(json.dumps({"id": r["id"], "text": r["text"]}) + "\n" for r in records)
    if not path.exists() or path.read_text(encoding="utf-8") != text:  # unchanged input: the threshold run is reused
        path.write_text(text, encoding="utf-8")
    return path, {r["id"]: r["parent_label"] for r in records}


def demo_input() -> tuple[Path, dict[str, str]]:
    gold = {}
    with gzip.open(DEMO, "rt", encoding="utf-8") as f:
        for line in f:
            r = json.loads(line)
            gold[r["id"]] = r["metadata"].get("category") or r["metadata"]["source"]
    return DEMO, gold


def measure(run_dir: Path, gold: dict[str, str]) -> dict[str, float]:
    store = RunStore(run_dir)
    clusters = store.read_table("clusters").to_pylist()
    assignments = store.read_table("assignments").to_pylist()
    agg = store.read_json("aggregates")
    levels = agg["run"]["levels"]
    published = {c["id"] for c in clusters if c["kind"] == "cluster" and c["published"]}
    base_key, top_key = f"level_{levels - 1}", "level_0"
    n = len(assignments)
    inside = sum(1 for a in assignments if a[base_key] in published) / n
    truth = [gold[a["conv_id"]] for a in assignments]
    found = [a[top_key] if a[top_key] in published else "withheld" for a in assignments]
    nmi = normalized_mutual_info_score(truth, found)
    true_size: dict[str, int] = {}
    for a in assignments:
        for level in range(levels):
            true_size[a[f"level_{level}"]] = true_size.get(a[f"level_{level}"], 0) + 1
    errors = [abs(c["share"] - true_size.get(c["id"], 0) / n) for c in agg["clusters"] if c["kind"] == "cluster"]
    return {"published": inside, "nmi": nmi, "share_mae_pp": 100 * float(np.mean(errors)) if errors else float("nan"),
            "k": sum(1 for c in clusters if c["kind"] == "cluster" and c["level"] == levels - 1),
            "top": sum(1 for c in agg["clusters"] if c["kind"] == "cluster" and c["level"] == 0)}


def run(input_path: Path, out: Path, overrides: dict) -> float:
    started = time.perf_counter()
    run_pipeline(input_path, out, load_config(None, {"embedding.cache": True, **overrides}), show_progress=False)
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--clinc-sample", type=int, default=None, help="CLINC150 conversations (default: all 23,695)")
    parser.add_argument("--epsilons", default="0.5,1,2,4,8")
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--work", type=Path, default=None)
    parser.add_argument("--data", default="clinc,demo")
    args = parser.parse_args()
    work = args.work or Path(tempfile.mkdtemp(prefix="dp-utility-"))
    work.mkdir(parents=True, exist_ok=True)
    epsilons = [float(e) for e in args.epsilons.split(",")]
    print(f"work directory {work}; epsilons {epsilons}; {args.repeats} DP run(s) each; delta 1e-6", flush=True)
    for name in args.data.split(","):
        path, gold = clinc_input(work, args.clinc_sample) if name == "clinc" else demo_input()
        base = work / f"{name}-thresholds"
        seconds = run(path, base, {})
        m = measure(base, gold)
        print(f"\n{name}: {len(gold):,} conversations", flush=True)
        print("| mode | published | top-level NMI | share MAE (pp) | base clusters k | published top-level | seconds |")
        print("| --- | --- | --- | --- | --- | --- | --- |")
        print(f"| thresholds | {m['published']:.1%} | {m['nmi']:.3f} | {m['share_mae_pp']:.2f} | {m['k']} | {m['top']} | {seconds:.0f} |", flush=True)
        for eps in epsilons:
            results, times = [], []
            for r in range(args.repeats):
                out = work / f"{name}-dp-{eps:g}-{r}"
                shutil.rmtree(out, ignore_errors=True)
                shutil.copytree(base, out)
                times.append(run(path, out, {"privacy.mode": "dp", "privacy.epsilon": eps}))
                results.append(measure(out, gold))

            def cell(key: str, fmt: str) -> str:
                vals = [res[key] for res in results]
                text = format(float(np.mean(vals)), fmt)
                return text if len(vals) == 1 else f"{text} ({format(min(vals), fmt)}-{format(max(vals), fmt)})"

            print(f"| DP epsilon {eps:g} | {cell('published', '.1%')} | {cell('nmi', '.3f')} | {cell('share_mae_pp', '.2f')} | "
                  f"{cell('k', '.0f')} | {cell('top', '.0f')} | {np.mean(times):.0f} |", flush=True)


if __name__ == "__main__":
    sys.exit(main())
