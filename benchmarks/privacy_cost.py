"""What the privacy gates withhold in a finished run: the utility cost, printed as measured numbers.

    python benchmarks/privacy_cost.py RUN [RUN ...]

Per run and level: published clusters of all, conversations in published clusters; then, over the
published base clusters, the share of conversations whose language and metadata values sit in a named
cell (not merged into "other"), and the share of dated conversations in published time buckets.
Works on runs of earlier versions too (fields they lack are reported as n/a).
"""

from __future__ import annotations

import sys

from convoscope.store import RunStore


def cell_share(clusters: list[dict], facet: str) -> float | None:
    named = total = 0
    for c in clusters:
        cells = (c.get("facets") or {}).get(facet)
        if not isinstance(cells, dict):
            continue
        if "hist" in cells:
            cells = cells["hist"]
        total += sum(cells.values())
        named += sum(n for k, n in cells.items() if k != "other")
    return named / total if total else None


def report(path: str) -> None:
    store = RunStore(path)
    rows = store.read_table("clusters").to_pylist()
    agg = store.read_json("aggregates")
    run = agg["run"]
    n = run["conversations"]
    print(f"{path}: {n:,} conversations, {run['accounts']:,} accounts, mode {run['mode']}, time unit {run.get('time_unit')}")
    for level in range(run["levels"]):
        cl = [r for r in rows if r["kind"] == "cluster" and r["level"] == level]
        pub = [r for r in cl if r["published"]]
        inside = sum(r["size"] for r in pub)
        print(f"  level {level}: published {len(pub)}/{len(cl)} clusters, {inside:,}/{n:,} conversations ({inside / n:.1%})")
    base = [c for c in agg["clusters"] if c["kind"] == "cluster" and c["level"] == run["levels"] - 1]
    for facet in [f["name"] for f in agg.get("facets", [])]:
        share = cell_share(base, facet)
        print(f"  base clusters, {facet}: {'n/a' if share is None else f'{share:.1%}'} of conversations in named cells")
    if run.get("time_unit"):
        shown = sum(n for c in base for _, n in c.get("timeline") or [])
        hidden = sum(c.get("timeline_suppressed") or 0 for c in base) if any("timeline_suppressed" in c for c in base) else None
        total = shown + (hidden or 0)
        print(f"  base clusters, timelines: {shown / total:.1%} of dated conversations in published buckets" if total else "  timelines: none")
    stage = (store.manifest.get("stages") or {}).get("privacy") or {}
    print(f"  privacy stage: {stage.get('seconds')} s; aggregates stage: {((store.manifest.get('stages') or {}).get('aggregates') or {}).get('seconds')} s")


if __name__ == "__main__":
    for arg in sys.argv[1:] or ["runs/demo"]:
        report(arg)
