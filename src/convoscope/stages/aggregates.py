"""Stage 9: the published data. Everything an analyst sees (report, explorer, analyses) comes from here.

Only published clusters and "Other (withheld)" buckets appear. Facet breakdowns per cluster merge any
category held by fewer than `min_accounts` accounts into "other"; metadata fields with too many
distinct values to be categories (ids, free text) are left out. Points carry coordinates and
published cluster ids only: no conversation or account ids.
"""

from __future__ import annotations

import time
from collections import Counter
from datetime import datetime, timezone
from typing import Any

import numpy as np
import orjson
import pyarrow as pa

from convoscope.context import RunContext
from convoscope.stages.rows import analysed_rows
from convoscope.store import fingerprint

STAGE = "aggregates"
MAX_CATEGORIES = 12  # per breakdown, the rest merged into "other"
MAX_METADATA_VALUES = 200  # a metadata field with more distinct values is not a category


def _categorical_breakdowns(labels: np.ndarray, values: list[Any], accounts: np.ndarray, n_groups: int, min_accounts: int) -> list[dict[str, int]]:
    """Per group: {value: count}, values with too few accounts (overall within the group) merged into 'other'."""
    vals = np.asarray(["" if v is None else str(v) for v in values], dtype=object)
    uniq, vidx = np.unique(vals, return_inverse=True)
    _, aidx = np.unique(accounts, return_inverse=True)
    counts = np.zeros((n_groups, len(uniq)), dtype=np.int64)
    np.add.at(counts, (labels, vidx), 1)
    triples = np.unique(np.stack([labels, vidx, aidx], axis=1), axis=0)
    acc = np.zeros((n_groups, len(uniq)), dtype=np.int64)
    np.add.at(acc, (triples[:, 0], triples[:, 1]), 1)
    out = []
    for g in range(n_groups):
        row: dict[str, int] = {}
        other = 0
        order = np.argsort(-counts[g])
        for j in order:
            c = int(counts[g, j])
            if c == 0:
                break
            name = uniq[j] or "unknown"
            if acc[g, j] >= min_accounts and len(row) < MAX_CATEGORIES:
                row[name] = c
            else:
                other += c
        if other:
            row["other"] = row.get("other", 0) + other
        out.append(row)
    return out


def _numeric_breakdowns(labels: np.ndarray, values: np.ndarray, n_groups: int, bins: list[tuple[str, float, float]]) -> list[dict[str, Any] | None]:
    out: list[dict[str, Any] | None] = []
    valid = ~np.isnan(values)
    for g in range(n_groups):
        v = values[(labels == g) & valid]
        if len(v) == 0:
            out.append(None)
            continue
        hist = {name: int(((v >= lo) & (v < hi)).sum()) for name, lo, hi in bins}
        out.append({"mean": round(float(v.mean()), 3), "n": int(len(v)), "hist": {k: c for k, c in hist.items() if c}})
    return out


def _time_bucket(span_days: float) -> str:
    return "day" if span_days <= 120 else ("week" if span_days <= 730 else "month")


def _bucket_start(ts: datetime, unit: str) -> str:
    d = ts.date()
    if unit == "week":
        d = d.fromordinal(d.toordinal() - d.weekday())
    elif unit == "month":
        d = d.replace(day=1)
    return d.isoformat()


def _metadata_columns(meta_json: list[str]) -> dict[str, list[Any]]:
    parsed = [orjson.loads(m) if m else {} for m in meta_json]
    keys = sorted({k for m in parsed for k in m})
    return {k: [m.get(k) for m in parsed] for k in keys}


def build_aggregates(ctx: RunContext) -> tuple[dict[str, Any], pa.Table]:
    config = ctx.config
    min_acc = config.privacy.min_accounts
    clusters = ctx.store.read_table("clusters").to_pylist()
    assignments = ctx.store.read_table("assignments")
    facets = ctx.store.read_table("facets")
    coords = ctx.store.read_table("map")
    rows = analysed_rows(ctx.store)
    n_levels = max(c["level"] for c in clusters if c["kind"] == "cluster") + 1
    published = {c["id"] for c in clusters if c["published"] and c["kind"] == "cluster"}
    x = coords.column("x").to_numpy()
    y = coords.column("y").to_numpy()

    # facet values per conversation
    category_facets: dict[str, list[Any]] = {"language": facets.column("language").to_pylist()}
    numeric_facets: dict[str, tuple[np.ndarray, list[tuple[str, float, float]]]] = {}
    turns = rows.table.column("n_turns").to_numpy().astype(np.float64)
    numeric_facets["turns"] = (turns, [("1", 1, 2), ("2", 2, 3), ("3", 3, 4), ("4-5", 4, 6), ("6+", 6, np.inf)])
    unavailable = dict(ctx.store.stage_record("facets").get("unavailable") or {})
    if config.llm_mode:
        concern = np.array([np.nan if v is None else v for v in facets.column("concerning").to_pylist()], dtype=np.float64)
        numeric_facets["concerning"] = (concern, [(str(i), i, i + 1) for i in range(1, 6)])
    for facet in config.facets.custom:
        col = facets.column(f"facet.{facet.name}").to_pylist()
        if facet.type == "category":
            category_facets[facet.name] = col
        elif facet.type == "number":
            arr = np.array([np.nan if v is None else float(v) for v in col])
            step = (facet.max - facet.min) / 5
            numeric_facets[facet.name] = (arr, [(f"{facet.min + i * step:g}", facet.min + i * step, facet.min + (i + 1) * step if i < 4 else np.inf) for i in range(5)])
    for key, values in _metadata_columns(rows.table.column("metadata").to_pylist()).items():
        present = [v for v in values if v is not None]
        if not present:
            continue
        if all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in present):
            arr = np.array([np.nan if v is None else float(v) for v in values])
            lo, hi = float(np.nanmin(arr)), float(np.nanmax(arr))
            step = (hi - lo) / 5 or 1.0
            numeric_facets[f"meta.{key}"] = (arr, [(f"{lo + i * step:g}", lo + i * step, lo + (i + 1) * step if i < 4 else np.inf) for i in range(5)])
        elif len(set(map(str, present))) <= MAX_METADATA_VALUES:
            category_facets[f"meta.{key}"] = values

    created = rows.table.column("created_at").to_pylist()
    times = [t for t in created if t is not None]
    time_unit = _time_bucket((max(times) - min(times)).total_seconds() / 86400) if times else None

    out_clusters = []
    points: dict[str, Any] = {"x": pa.array(x, type=pa.float32()), "y": pa.array(y, type=pa.float32())}
    for level in range(n_levels):
        ids = np.asarray(assignments.column(f"level_{level}").to_pylist(), dtype=object)
        uniq, labels = np.unique(ids, return_inverse=True)
        n = len(uniq)
        cat = {name: _categorical_breakdowns(labels, vals, rows.accounts, n, min_acc) for name, vals in category_facets.items()}
        num = {name: _numeric_breakdowns(labels, arr, n, bins) for name, (arr, bins) in numeric_facets.items()}
        timelines: list[list | None] = [None] * n
        if times:
            per_group: list[Counter] = [Counter() for _ in range(n)]
            for g, t in zip(labels, created):
                if t is not None:
                    per_group[g][_bucket_start(t, time_unit)] += 1
            timelines = [sorted(c.items()) for c in per_group]
        cx = np.bincount(labels, weights=x, minlength=n) / np.maximum(np.bincount(labels, minlength=n), 1)
        cy = np.bincount(labels, weights=y, minlength=n) / np.maximum(np.bincount(labels, minlength=n), 1)
        info = {cid: g for g, cid in enumerate(uniq)}
        for c in clusters:
            if c["kind"] != "cluster" or c["level"] != level or c["id"] not in published:
                continue
            g = info[c["id"]]
            facet_data: dict[str, Any] = {name: cat[name][g] for name in cat}
            facet_data.update({name: num[name][g] for name in num if num[name][g] is not None})
            out_clusters.append({
                "id": c["id"], "level": level, "parent": c["parent"], "kind": "cluster", "name": c["name"], "description": c["description"],
                "size": c["size"], "accounts": c["accounts"], "x": round(float(cx[g]), 4), "y": round(float(cy[g]), 4),
                "audit": {"score": c["audit_score"], "reason": c["audit_reason"]} if c["audit_score"] is not None else None,
                "facets": facet_data, "timeline": timelines[g],
            })
        points[f"level_{level}"] = pa.array([cid if cid in published else None for cid in ids.tolist()], type=pa.string())
    for c in clusters:
        if c["kind"] == "other":
            out_clusters.append({"id": c["id"], "level": c["level"], "parent": c["parent"], "kind": "other", "name": c["name"],
                                 "description": c["description"], "size": c["size"], "accounts": None, "x": None, "y": None,
                                 "audit": None, "facets": {}, "timeline": None})
    total = len(x)
    children: dict[str | None, list[str]] = {}
    for c in out_clusters:
        c["share"] = round(c["size"] / total, 6) if total else 0.0
        children.setdefault(c["parent"], []).append(c["id"])
    for c in out_clusters:
        c["children"] = children.get(c["id"], [])
    out_clusters.sort(key=lambda c: (c["level"], c["kind"] == "other", -c["size"]))

    base_level = n_levels - 1
    base_ids = np.asarray(assignments.column(f"level_{base_level}").to_pylist(), dtype=object)
    withheld_convs = int(sum(1 for cid in base_ids if cid not in published))
    facet_list = [{"name": n, "kind": "category"} for n in category_facets] + [
        {"name": n, "kind": "number", **({"min": 1, "max": 5} if n == "concerning" else {})} for n in numeric_facets]
    hierarchy = ctx.store.stage_record("hierarchy") or {}
    aggregates = {
        "run": {
            "mode": "llm" if config.llm_mode else "extractive",
            "facet": ctx.hierarchy_facet,
            "conversations": total,
            "accounts": int(len(set(rows.accounts.tolist()))),
            "levels": n_levels,
            "level_sizes": hierarchy.get("sizes"),
            "min_accounts": min_acc,
            "min_conversations": config.privacy.min_conversations,
            "embedding_model": (ctx.store.stage_record("embed") or {}).get("model"),
            "time_range": [min(times).astimezone(timezone.utc).isoformat(), max(times).astimezone(timezone.utc).isoformat()] if times else None,
            "time_unit": time_unit,
        },
        "facets": facet_list,
        "facets_unavailable": unavailable,
        "clusters": out_clusters,
        "withheld": {
            "clusters": sum(1 for c in clusters if c["kind"] == "cluster" and not c["published"]),
            "conversations": withheld_convs,
        },
    }
    return aggregates, pa.table(points)


def run_aggregates(ctx: RunContext, upstream: str) -> str:
    fp = fingerprint(STAGE, upstream, ctx.config.privacy.model_dump(), [f.model_dump() for f in ctx.config.facets.custom])
    if ctx.store.stage_complete(STAGE, fp):
        return fp
    started = time.perf_counter()
    aggregates, points = build_aggregates(ctx)
    artifacts = [ctx.store.write_json("aggregates", aggregates), ctx.store.write_table("points", points)]
    ctx.store.mark_complete(STAGE, fp, artifacts, seconds=time.perf_counter() - started)
    return fp
