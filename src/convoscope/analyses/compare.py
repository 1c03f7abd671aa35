"""`convoscope compare`: clusters that appeared, grew or shrank most between two periods.

Two ways to get the periods:
- `compare RUN --split-at DATE`: one run split at the date rounded down to its published time bucket
  (day, week or month), counted from the published timelines (before the bucket / from it on;
  suppressed buckets and conversations without a timestamp are left out).
- `compare RUN_BEFORE RUN_AFTER`: two runs, from their published aggregates only. Clusters are matched
  by name (exact after case/space normalisation), else by the embedding of "name: description"
  (`use-multilingual`): mutual best pairs with cosine >= `match_threshold` (0.8), greedily from the
  most similar. Unmatched clusters count as absent (0) in the other run; "absent" can also mean the
  cluster was withheld there by the privacy gates.
  Two runs of one lineage (a run and `convoscope assign` output placed into it, or two assign outputs
  of the same run) share their cluster ids, so they are matched by id instead. A cluster published in
  one of them only is "not published" in the other (withheld by its privacy gates, or without a
  conversation there: the two are not told apart, as that would say whether a withheld count is 0):
  its count there is unknown (None), so it gets no z, p or status beyond "not published" and is left
  out of the significance test and its Bonferroni count.

For each cluster: shares before and after, their difference (percentage points), the pooled
two-proportion z-test (z and two-sided p) and whether the change is beyond noise: p below `alpha`
after a Bonferroni correction for the number of clusters compared.
"""

from __future__ import annotations

import re
from datetime import datetime
from pathlib import Path
from typing import Any, Sequence

import numpy as np
from rich.console import Console
from rich.table import Table

from convoscope import policy
from convoscope.analyses.common import AnalysisError, Run, fmt_p, label, two_proportion_z

NOT_PUBLISHED = "not published"


def _norm(name: str) -> str:
    return re.sub(r"\s+", " ", (name or "").strip().lower())


def _status(x1: int, x2: int, diff: float, significant: bool) -> str:
    if x1 == 0 and x2 > 0:
        return "appeared"
    if x2 == 0 and x1 > 0:
        return "disappeared"
    if not significant:
        return "stable"
    return "grew" if diff > 0 else "shrank"


def _rows(pairs: Sequence[tuple[dict | None, dict | None, int | None, int | None]], n1: int, n2: int, alpha: float) -> list[dict[str, Any]]:
    """One row per pair; a count of None is a cluster not published in that run: no test, and not counted in
    the Bonferroni correction."""
    m = max(1, sum(1 for _, _, x1, x2 in pairs if x1 is not None and x2 is not None))
    out = []
    for before, after, x1, x2 in pairs:
        ref = after or before
        assert ref is not None  # a pair holds at least one cluster
        row: dict[str, Any] = {"name": ref["name"], "before_id": before["id"] if before else None, "after_id": after["id"] if after else None,
                               "before_name": before["name"] if before else None, "match": None, "before": x1, "after": x2}
        if x1 is None or x2 is None:
            known, n = (x2, n2) if x1 is None else (x1, n1)
            share = (known or 0) / n if n else 0.0
            row.update({"share_before": None if x1 is None else share, "share_after": None if x2 is None else share, "share_diff": None,
                        "z": None, "p": None, "p_bonferroni": None, "beyond_noise": False, "status": NOT_PUBLISHED})
            out.append(row)
            continue
        z, p = two_proportion_z(x1, n1, x2, n2)
        p1, p2 = (x1 / n1 if n1 else 0.0), (x2 / n2 if n2 else 0.0)
        p_adj = min(1.0, p * m)
        sig = p_adj < alpha
        row.update({"share_before": p1, "share_after": p2, "share_diff": p2 - p1,
                    "z": z, "p": p, "p_bonferroni": p_adj, "beyond_noise": sig, "status": _status(x1, x2, p2 - p1, sig)})
        out.append(row)
    out.sort(key=lambda r: (r["z"] is None, -abs(r["z"] or 0.0), -abs(r["share_diff"] or 0.0)))
    return out


def compare_split(run: Run, split_at: datetime, level: int | None = None, alpha: float = 0.05) -> dict[str, Any]:
    """Before vs from `split_at`, from the published timelines only: the split is rounded down to the
    start of its time bucket (a finer split could isolate a few conversations), and time buckets the
    privacy gates suppressed count on neither side."""
    level = run.check_level(level)
    unit = run.info.get("time_unit")
    if not unit:
        if run.differentially_private:
            raise AnalysisError("the run's differential-privacy release has no timeline (no month had enough accounts to pass its "
                                "noisy selection), so it cannot be split by date")
        raise AnalysisError("the run has no conversation timestamps, so it cannot be split by date")
    split = policy.bucket_start(split_at, unit)
    # the nodes that partition the run at this level: its clusters and the withheld remainders above it
    nodes = run.clusters(level) + [c for c in run.clusters(include_other=True) if c["kind"] == "other" and c["level"] <= level]
    before: dict[str, int] = {}
    after: dict[str, int] = {}
    for c in nodes:
        for bucket, n in c.get("timeline") or []:
            side = before if bucket < split else after
            side[c["id"]] = side.get(c["id"], 0) + int(n)
    n1, n2 = sum(before.values()), sum(after.values())
    if n1 == 0 or n2 == 0:
        raise AnalysisError(f"no conversations {'before' if n1 == 0 else 'from'} {split} (the split rounded to its {unit}) in this run's "
                            f"published timelines; its time range is {run.info.get('time_range')}")
    pairs = [(c, c, before.get(c["id"], 0), after.get(c["id"], 0)) for c in run.clusters(level)]
    rows = _rows(pairs, n1, n2, alpha)
    for r in rows:
        r["match"] = "same run"
    return {"analysis": "compare", "mode": "split", "split_at": split, "split_requested": split_at.date().isoformat(), "split_unit": unit, "level": level,
            "before": {"conversations": n1}, "after": {"conversations": n2}, "alpha": alpha, "correction": "bonferroni",
            "counts": "published timeline cells (buckets with too few accounts are suppressed and counted on neither side)",
            "clusters": rows}


def match_clusters(before: list[dict], after: list[dict], threshold: float = 0.8, embedder: Any = None) -> list[tuple[dict | None, dict | None, str | None, float | None]]:
    """Pairs (before, after, how, cosine): exact name first, then mutual-best embedding of 'name: description'."""
    pairs: list[tuple[dict | None, dict | None, str | None, float | None]] = []
    by_name: dict[str, list[dict]] = {}
    for c in after:
        by_name.setdefault(_norm(c["name"]), []).append(c)
    left_b, used_a = [], set()
    for c in before:
        cands = [a for a in by_name.get(_norm(c["name"]), []) if a["id"] not in used_a]
        if cands:
            used_a.add(cands[0]["id"])
            pairs.append((c, cands[0], "name", 1.0))
        else:
            left_b.append(c)
    left_a = [a for a in after if a["id"] not in used_a]
    if left_b and left_a:
        if embedder is None:
            from convoscope.embedders import make_embedder

            embedder = make_embedder("use-multilingual")
        vb = embedder.encode([f"{c['name']}: {c.get('description') or ''}" for c in left_b])
        va = embedder.encode([f"{c['name']}: {c.get('description') or ''}" for c in left_a])
        sims = np.asarray(vb) @ np.asarray(va).T
        taken_b, taken_a = set(), set()
        for flat in np.argsort(-sims, axis=None):
            i, j = divmod(int(flat), sims.shape[1])
            if sims[i, j] < threshold:
                break
            if i in taken_b or j in taken_a:
                continue
            taken_b.add(i)
            taken_a.add(j)
            pairs.append((left_b[i], left_a[j], "embedding", float(sims[i, j])))
        left_b = [c for i, c in enumerate(left_b) if i not in taken_b]
        left_a = [c for j, c in enumerate(left_a) if j not in taken_a]
    pairs.extend((c, None, None, None) for c in left_b)
    pairs.extend((None, a, None, None) for a in left_a)
    return pairs


def _lineage(run: Run) -> tuple[str, str | None]:
    """The run whose cluster ids this run uses (itself, or the run `convoscope assign` placed it into), and its facet."""
    source = (run.store.manifest.get("assigned_from") or {}).get("run")
    root = run.store.root if run.store.parent is None else run.store.parent.root
    return str(Path(source or root).resolve()), run.info.get("facet")


def _same_ids(run1: Run, run2: Run) -> bool:
    """Both runs of one lineage, and every cluster published in both under one name (a rerun of the original
    run after assign would give its ids other clusters: then the runs are matched as unrelated ones)."""
    if _lineage(run1) != _lineage(run2):
        return False
    names1 = {c["id"]: c["name"] for c in run1.clusters()}
    return all(names1[c["id"]] == c["name"] for c in run2.clusters() if c["id"] in names1)


def _may_hold(run: Run, cluster_id: str) -> bool:
    """Whether `run` has a node `cluster_id` it may have withheld: the original run of a lineage never has the
    unassigned bucket of its assign outputs; every other node of the lineage can be in any of its runs."""
    from convoscope.assign import UNASSIGNED_ID

    if "assigned_from" in run.store.manifest:
        return True
    return not (cluster_id == UNASSIGNED_ID or cluster_id.startswith(f"{UNASSIGNED_ID}-l"))


def match_by_id(before: list[dict], after: list[dict]) -> list[tuple[dict | None, dict | None, str | None, float | None]]:
    """Pairs (before, after, "id", 1.0) of the clusters published in both runs of one lineage, then the rest unpaired."""
    after_by_id = {c["id"]: c for c in after}
    pairs: list[tuple[dict | None, dict | None, str | None, float | None]] = []
    for c in before:
        a = after_by_id.pop(c["id"], None)
        pairs.append((c, a, "id", 1.0) if a else (c, None, None, None))
    pairs.extend((None, a, None, None) for a in after_by_id.values())
    return pairs


def compare_runs(run1: Run, run2: Run, level: int | None = None, alpha: float = 0.05, match_threshold: float = 0.8, embedder: Any = None) -> dict[str, Any]:
    l1 = run1.check_level(level)
    l2 = run2.check_level(level)
    n1, n2 = int(run1.info["conversations"]), int(run2.info["conversations"])
    same_ids = _same_ids(run1, run2)
    if same_ids:
        matched = match_by_id(run1.clusters(l1), run2.clusters(l2))
    else:
        matched = match_clusters(run1.clusters(l1), run2.clusters(l2), match_threshold, embedder)
    pairs: list[tuple[dict | None, dict | None, int | None, int | None]] = []
    for b, a, _, _ in matched:
        x1: int | None = b["size"] if b else 0
        x2: int | None = a["size"] if a else 0
        if same_ids and b is None and a is not None and _may_hold(run1, a["id"]):
            x1 = None  # the first run has this cluster but did not publish it
        if same_ids and a is None and b is not None and _may_hold(run2, b["id"]):
            x2 = None
        pairs.append((b, a, x1, x2))
    how = {((b or {}).get("id"), (a or {}).get("id")): (m, s) for b, a, m, s in matched}
    rows = _rows(pairs, n1, n2, alpha)
    for r in rows:
        m, s = how[(r["before_id"], r["after_id"])]
        r["match"] = m
        r["match_cosine"] = s
        if r["status"] == NOT_PUBLISHED:
            r["note"] = (f"not published in the {'first' if r['before'] is None else 'second'} run (withheld by its privacy gates, "
                         "or no conversation there): left out of the test")
        elif r["status"] == "appeared":
            r["note"] = "absent before (new)" if same_ids else "absent before (new, or not published in the first run)"
        elif r["status"] == "disappeared":
            r["note"] = "absent after (gone, or not published in the second run)"
    return {"analysis": "compare", "mode": "runs", "level_before": l1, "level_after": l2,
            "before": {"conversations": n1, "time_range": run1.info.get("time_range")},
            "after": {"conversations": n2, "time_range": run2.info.get("time_range")},
            "alpha": alpha, "correction": "bonferroni", "match_threshold": match_threshold,
            "matched_by": "id (runs of one lineage: a run and its assign outputs)" if same_ids else "name, then embedding",
            "clusters": rows}


def print_compare(result: dict[str, Any], console: Console, top: int = 20) -> None:
    if result["mode"] == "split":
        title = f"Before vs from {result['split_at'][:10]} (level {result['level']}): {result['before']['conversations']:,} vs {result['after']['conversations']:,} conversations"
    else:
        title = f"Run 1 vs run 2: {result['before']['conversations']:,} vs {result['after']['conversations']:,} conversations"
    t = Table(title=title)
    for col, j in (("cluster", "left"), ("status", "left"), ("before", "right"), ("after", "right"), ("share before", "right"),
                   ("share after", "right"), ("change (pp)", "right"), ("z", "right"), ("p", "right"), ("beyond noise", "center")):
        t.add_column(col, justify=j)
    if result["mode"] == "runs":
        t.add_column("match", justify="left")
    styles = {"appeared": "green", "grew": "green", "shrank": "red", "disappeared": "red", "stable": "dim", NOT_PUBLISHED: "yellow"}
    rows = [r for r in result["clusters"] if r["status"] != "stable"][:top] or result["clusters"][:top]

    def pct(share: float | None) -> str:
        return "—" if share is None else f"{100 * share:.1f}%"

    for r in rows:
        tested = r["z"] is not None
        cells = [label(r, 48), f"[{styles[r['status']]}]{r['status']}[/]", "—" if r["before"] is None else f"{r['before']:,}",
                 "—" if r["after"] is None else f"{r['after']:,}", pct(r["share_before"]), pct(r["share_after"]),
                 f"{100 * r['share_diff']:+.1f}" if tested else "—", f"{r['z']:+.1f}" if tested else "—",
                 fmt_p(r["p"]) if tested else "—", ("yes" if r["beyond_noise"] else "no") if tested else "—"]
        if result["mode"] == "runs":
            match = r["match"]
            cells.append("name" if match == "name" else "same id" if match == "id" else
                         (f"≈ {label({'name': r['before_name'], 'id': ''}, 48)} ({r['match_cosine']:.2f})" if match else "—"))
        t.add_row(*cells)
    console.print(t)
    stable = sum(1 for r in result["clusters"] if r["status"] == "stable")
    tested_n = sum(1 for r in result["clusters"] if r["z"] is not None)
    unpublished = len(result["clusters"]) - tested_n
    console.print(f"[dim]Two-proportion z-test; beyond noise = p < {result['alpha']} after Bonferroni over {tested_n} clusters. "
                  f"{stable} clusters unchanged within noise."
                  + (f" {unpublished} not published in one of the runs (withheld by its privacy gates, or without conversations there; "
                     "not tested)." if unpublished else "") + "[/]")
