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

For each cluster: shares before and after, their difference (percentage points), the pooled
two-proportion z-test (z and two-sided p) and whether the change is beyond noise: p below `alpha`
after a Bonferroni correction for the number of clusters compared.
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Any

import numpy as np
from rich.console import Console
from rich.table import Table

from convoscope import policy
from convoscope.analyses.common import AnalysisError, Run, fmt_p, label, two_proportion_z


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


def _rows(pairs: list[tuple[dict | None, dict | None, int, int]], n1: int, n2: int, alpha: float) -> list[dict[str, Any]]:
    m = max(1, len(pairs))
    out = []
    for before, after, x1, x2 in pairs:
        z, p = two_proportion_z(x1, n1, x2, n2)
        p1, p2 = (x1 / n1 if n1 else 0.0), (x2 / n2 if n2 else 0.0)
        p_adj = min(1.0, p * m)
        sig = p_adj < alpha
        ref = after or before
        out.append({"name": ref["name"], "before_id": before["id"] if before else None, "after_id": after["id"] if after else None,
                    "before_name": before["name"] if before else None, "match": None,
                    "before": x1, "after": x2, "share_before": p1, "share_after": p2, "share_diff": p2 - p1,
                    "z": z, "p": p, "p_bonferroni": p_adj, "beyond_noise": sig, "status": _status(x1, x2, p2 - p1, sig)})
    out.sort(key=lambda r: (-abs(r["z"]), -abs(r["share_diff"])))
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


def compare_runs(run1: Run, run2: Run, level: int | None = None, alpha: float = 0.05, match_threshold: float = 0.8, embedder: Any = None) -> dict[str, Any]:
    l1 = run1.check_level(level)
    l2 = run2.check_level(level)
    n1, n2 = int(run1.info["conversations"]), int(run2.info["conversations"])
    matched = match_clusters(run1.clusters(l1), run2.clusters(l2), match_threshold, embedder)
    pairs = [(b, a, b["size"] if b else 0, a["size"] if a else 0) for b, a, _, _ in matched]
    how = {((b or {}).get("id"), (a or {}).get("id")): (m, s) for b, a, m, s in matched}
    rows = _rows(pairs, n1, n2, alpha)
    for r in rows:
        m, s = how[(r["before_id"], r["after_id"])]
        r["match"] = m
        r["match_cosine"] = s
        if r["status"] == "appeared":
            r["note"] = "absent before (new, or not published in the first run)"
        elif r["status"] == "disappeared":
            r["note"] = "absent after (gone, or not published in the second run)"
    return {"analysis": "compare", "mode": "runs", "level_before": l1, "level_after": l2,
            "before": {"conversations": n1, "time_range": run1.info.get("time_range")},
            "after": {"conversations": n2, "time_range": run2.info.get("time_range")},
            "alpha": alpha, "correction": "bonferroni", "match_threshold": match_threshold, "clusters": rows}


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
    styles = {"appeared": "green", "grew": "green", "shrank": "red", "disappeared": "red", "stable": "dim"}
    rows = [r for r in result["clusters"] if r["status"] != "stable"][:top] or result["clusters"][:top]
    for r in rows:
        cells = [label(r, 48), f"[{styles[r['status']]}]{r['status']}[/]", f"{r['before']:,}", f"{r['after']:,}", f"{100 * r['share_before']:.1f}%",
                 f"{100 * r['share_after']:.1f}%", f"{100 * r['share_diff']:+.1f}", f"{r['z']:+.1f}", fmt_p(r["p"]), "yes" if r["beyond_noise"] else "no"]
        if result["mode"] == "runs":
            cells.append("name" if r["match"] == "name" else (f"≈ {label({'name': r['before_name'], 'id': ''}, 48)} ({r['match_cosine']:.2f})" if r["match"] else "—"))
        t.add_row(*cells)
    console.print(t)
    stable = sum(1 for r in result["clusters"] if r["status"] == "stable")
    console.print(f"[dim]Two-proportion z-test; beyond noise = p < {result['alpha']} after Bonferroni over {len(result['clusters'])} clusters. "
                  f"{stable} clusters unchanged within noise.[/]")
