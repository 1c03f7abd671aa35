"""Stage 9: the release. Everything an analyst sees (report, explorer, serve, analyses) comes from here.

Only published clusters and "Other (withheld)" remainders appear (the privacy stage decides which).
Numbers are computed from conversations only for published base clusters and remainders; every other
node's numbers are the sums of its parts, so a parent minus its children is always a published
remainder that passed the gates. Within a node, a breakdown cell (category, histogram bin, time bucket)
is shown only with at least `min_accounts` accounts, the rest merged into "other" (convoscope.policy).
Numeric metadata is binned at rounded quantile edges, and means use values clamped to the 5-95%
range, so no raw minimum, maximum or outlier is published. Metadata fields with too many distinct
values to be categories (ids, free text) are left out. Time ranges are bucket starts. Points carry
coordinates only for conversations of published base clusters, and no conversation or account ids.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import Any

import numpy as np
import orjson
import pyarrow as pa

from convoscope import policy
from convoscope.context import RunContext
from convoscope.dp import guarantee_for_thresholds
from convoscope.stages.rows import analysed_rows
from convoscope.stage_runner import Stage, StageOutput, StageRecord, run_stage

MAX_CATEGORIES = 12  # per breakdown, the rest merged into "other"
MAX_METADATA_VALUES = 200  # a metadata field with more distinct values is not a category


def _time_bucket(span_days: float) -> str:
    return "day" if span_days <= 120 else ("week" if span_days <= 730 else "month")


UNITS = ("day", "week", "month")
MIN_PUBLISHED_TIME_SHARE = 0.5  # coarsen time buckets until at least this share of conversations is in shown cells


def _timelines(direct: np.ndarray, created: list, accounts: np.ndarray, n_direct: int, min_accounts: int, max_share: float,
               finest: str) -> tuple[str, list[dict[str, int]]]:
    """Per direct node, its thresholded counts per time bucket, at the finest unit (from `finest` up)
    whose shown cells hold at least half of the dated conversations: a busy run gets days, a small
    one weeks or months instead of timelines the thresholds would empty."""
    dated = sum(1 for g, t in zip(direct.tolist(), created) if g >= 0 and t is not None)
    for unit in UNITS[UNITS.index(finest):]:
        buckets = [None if t is None else policy.bucket_start(t, unit) for t in created]
        cells = _cells_by_group(direct, buckets, accounts, n_direct, min_accounts, None, max_share)
        shown = sum(n for c in cells for k, n in c.items() if k != policy.OTHER)
        if unit == UNITS[-1] or shown >= MIN_PUBLISHED_TIME_SHARE * dated:
            return unit, cells
    raise AssertionError("unreachable")


def _published_range(clusters: list[dict[str, Any]]) -> list[str] | None:
    """First and last published time bucket: the raw first and last dates could be one person's."""
    buckets = [b for c in clusters if c["level"] == 0 for b, _ in c.get("timeline") or []]
    return [min(buckets), max(buckets)] if buckets else None


def _direct_groups(clusters: list[dict[str, Any]], assignments: pa.Table, n_levels: int) -> tuple[np.ndarray, list[str]]:
    """Per conversation, the one node whose numbers are computed from conversations: its published base
    cluster, or else the "Other (withheld)" remainder under its deepest published ancestor. Every
    other published number is a sum of these nodes' numbers, so nothing is recoverable by subtraction."""
    published = {c["id"] for c in clusters if c["published"] and c["kind"] == "cluster"}
    other_ids = {c["id"] for c in clusters if c["kind"] == "other"}
    n = assignments.num_rows
    node = np.full(n, "other" if "other" in other_ids else None, dtype=object)
    for level in range(n_levels):
        ids = np.asarray(assignments.column(f"level_{level}").to_pylist(), dtype=object)
        shown = np.fromiter((cid in published for cid in ids), dtype=bool, count=n)
        if level == n_levels - 1:
            node[shown] = ids[shown]
        else:
            node[shown] = [f"{cid}/other" if f"{cid}/other" in other_ids else None for cid in ids[shown]]
    groups = sorted({g for g in node.tolist() if g is not None})
    index = {g: i for i, g in enumerate(groups)}
    return np.fromiter((index.get(g, -1) for g in node.tolist()), dtype=np.int64, count=n), groups


def _cells_by_group(labels: np.ndarray, cells: list[Any], accounts: np.ndarray, n_groups: int, min_accounts: int,
                    max_cells: int | None, max_account_share: float = 1.0) -> list[dict[str, int]]:
    """Per direct node: its thresholded breakdown (policy.threshold_cells) of one per-conversation value;
    conversations without a value count in "other", so no subtraction from the node's size reveals them."""
    per_group: list[dict[Any, Counter]] = [{} for _ in range(n_groups)]
    for g, cell, account in zip(labels.tolist(), cells, accounts.tolist()):
        if g < 0:
            continue
        if cell is None:  # no value (no timestamp, a failed facet): hidden in "other", so cells add up to the node's size
            cell = policy.OTHER
        cell_accounts = per_group[g].get(cell)
        if cell_accounts is None:
            cell_accounts = per_group[g][cell] = Counter()
        cell_accounts[account] += 1
    return [policy.threshold_cells(m, min_accounts, max_account_share, max_cells) for m in per_group]


def _gated_sums(direct: np.ndarray, facet: "NumberFacet", accounts: np.ndarray, n_direct: int, min_accounts: int,
                max_share: float) -> tuple[np.ndarray, np.ndarray]:
    """Per direct node: the sum (of clamped values) and the count of the conversations with a value, or
    zero for both when those conversations fail the cell rule (too few accounts, or one dominant): a
    mean over one account's values would be that person's value. Parents add only what passed."""
    valued = np.isfinite(facet.values) & (direct >= 0)
    groups = direct[valued]
    total = np.bincount(groups, weights=np.clip(facet.values[valued], facet.low, facet.high), minlength=n_direct)
    count = np.bincount(groups, minlength=n_direct)
    per_group: list[Counter] = [Counter() for _ in range(n_direct)]
    for g, account in zip(groups.tolist(), accounts[valued].tolist()):
        per_group[g][account] += 1
    for g, acc in enumerate(per_group):
        if acc and (len(acc) < min_accounts or max(acc.values()) > max_share * count[g]):
            total[g], count[g] = 0.0, 0
    return total, count


def _category_value(v: Any) -> str:
    if v is None or v == "":
        return "unknown"
    if isinstance(v, float) and v.is_integer():
        return f"{v:g}"
    return str(v)


def _metadata_columns(meta_json: list[str]) -> dict[str, list[Any]]:
    parsed = [orjson.loads(m) if m else {} for m in meta_json]
    keys = sorted({k for m in parsed for k in m})
    return {k: [m.get(k) for m in parsed] for k in keys}


@dataclass
class NumberFacet:
    """A numeric facet: per-conversation values, the fixed or rounded-quantile bin edges, and the range
    values are clamped to before a mean (so an outlier cannot move a published mean far)."""

    values: np.ndarray
    labels: list[str | None]
    low: float
    high: float
    extra: dict[str, Any]


def _number_facet(values: np.ndarray, edges: list[float] | None = None, fixed_labels: list[str | None] | None = None, **extra: Any) -> NumberFacet:
    finite = values[np.isfinite(values)]
    low, high = (float(np.quantile(finite, 0.05)), float(np.quantile(finite, 0.95))) if len(finite) else (0.0, 0.0)
    labels = fixed_labels if fixed_labels is not None else policy.bin_of(values, edges if edges is not None else policy.rounded_edges(values))
    return NumberFacet(values, labels, low, high, extra)


def build_aggregates(ctx: RunContext) -> tuple[dict[str, Any], pa.Table]:
    config = ctx.config
    min_acc = config.privacy.min_accounts
    max_share = config.privacy.max_account_share
    clusters = ctx.store.read_table("clusters").to_pylist()
    assignments = ctx.store.read_table("assignments")
    facets = ctx.store.read_table("facets")
    coords = ctx.store.read_table("map")
    rows = analysed_rows(ctx.store)
    n_levels = max(c["level"] for c in clusters if c["kind"] == "cluster") + 1
    published = {c["id"] for c in clusters if c["published"] and c["kind"] == "cluster"}
    x = coords.column("x").to_numpy()
    y = coords.column("y").to_numpy()
    accounts = rows.accounts

    # facet values per conversation
    category_facets: dict[str, list[Any]] = {"language": facets.column("language").to_pylist()}
    numeric_facets: dict[str, NumberFacet] = {}
    turns = rows.table.column("n_turns").to_numpy().astype(np.float64)
    turn_bins = {1: "1", 2: "2", 3: "3", 4: "4-5", 5: "4-5"}
    numeric_facets["turns"] = _number_facet(turns, fixed_labels=[turn_bins.get(int(t), "6+") if np.isfinite(t) else None for t in turns])
    unavailable = dict(ctx.store.stage_record("facets").get("unavailable") or {})
    if config.llm_mode:
        concern = np.array([np.nan if v is None else v for v in facets.column("concerning").to_pylist()], dtype=np.float64)
        numeric_facets["concerning"] = _number_facet(concern, fixed_labels=[None if not np.isfinite(v) else str(int(v)) for v in concern], min=1, max=5)
    for facet in config.facets.custom:
        col = facets.column(f"facet.{facet.name}").to_pylist()
        if facet.type == "category":
            category_facets[facet.name] = col
        elif facet.type == "number":
            arr = np.array([np.nan if v is None else float(v) for v in col])
            step = (facet.max - facet.min) / 5  # the user's own scale: fixed edges, not the data's
            numeric_facets[facet.name] = _number_facet(arr, edges=[facet.min + i * step for i in range(1, 5)], min=facet.min, max=facet.max)
    for key, values in _metadata_columns(rows.table.column("metadata").to_pylist()).items():
        present = [v for v in values if v is not None]
        # a field only a few accounts have is not even named: its name would say they are in the run
        if len({a for a, v in zip(accounts.tolist(), values) if v is not None}) < min_acc:
            continue
        numeric = all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in present)
        if numeric and len(set(present)) > MAX_CATEGORIES:
            numeric_facets[f"meta.{key}"] = _number_facet(np.array([np.nan if v is None else float(v) for v in values]))
        elif len(set(map(str, present))) <= MAX_METADATA_VALUES:  # a few numbers (a 0/1 flag, a tier) read best as categories
            category_facets[f"meta.{key}"] = [None if v is None else _category_value(v) for v in values]

    created = rows.table.column("created_at").to_pylist()
    times = [t for t in created if t is not None]
    # the finest unit is chosen from the 5-95% spread of the dates: one stray date must not coarsen everyone's
    stamps = np.array([t.timestamp() for t in times]) if times else np.zeros(0)
    time_unit = _time_bucket(float(np.percentile(stamps, 95) - np.percentile(stamps, 5)) / 86400) if times else None

    # numbers of the nodes computed from conversations (published base clusters and remainders)
    direct, direct_ids = _direct_groups(clusters, assignments, n_levels)
    n_direct = len(direct_ids)
    cat = {name: _cells_by_group(direct, [_category_value(v) for v in vals], accounts, n_direct, min_acc, MAX_CATEGORIES, max_share)
           for name, vals in category_facets.items()}
    hist = {name: _cells_by_group(direct, f.labels, accounts, n_direct, min_acc, None, max_share) for name, f in numeric_facets.items()}
    sums = {name: _gated_sums(direct, f, accounts, n_direct, min_acc, max_share) for name, f in numeric_facets.items()}
    for name in hist:
        # a node whose values are gated (too few accounts, or one dominant) shows no mean and no histogram; it
        # counts whole in its parents' "other" bin, so their histograms still add up to their size and say
        # nothing of where the dominant account's values lie
        for g in np.flatnonzero(sums[name][1] == 0):
            if hist[name][g]:
                hist[name][g] = {policy.OTHER: sum(hist[name][g].values())}
    timelines: list[dict[str, int]] = [{} for _ in range(n_direct)]
    if times:
        time_unit, timelines = _timelines(direct, created, accounts, n_direct, min_acc, max_share, time_unit)
    numbers: dict[str, dict[str, Any]] = {}
    for g, node_id in enumerate(direct_ids):
        numbers[node_id] = {"cat": {name: cat[name][g] for name in cat}, "hist": {name: hist[name][g] for name in hist},
                            "sum": {name: float(sums[name][0][g]) for name in sums}, "n": {name: int(sums[name][1][g]) for name in sums},
                            "timeline": timelines[g]}

    # published nodes, and everything else as sums of their parts (children first)
    nodes = [c for c in clusters if (c["kind"] == "cluster" and c["id"] in published) or c["kind"] == "other"]
    parts: dict[str, list[str]] = {}
    for c in nodes:
        if c["parent"] is not None:
            parts.setdefault(c["parent"], []).append(c["id"])
    for c in sorted(nodes, key=lambda c: -c["level"]):
        if c["id"] in numbers:
            continue
        kids = [numbers[k] for k in parts.get(c["id"], []) if k in numbers]
        numbers[c["id"]] = {"cat": {name: policy.add_breakdowns((k["cat"][name] for k in kids), MAX_CATEGORIES) for name in cat},
                            "hist": {name: policy.add_breakdowns(k["hist"][name] for k in kids) for name in hist},
                            "sum": {name: sum(k["sum"][name] for k in kids) for name in sums},
                            "n": {name: sum(k["n"][name] for k in kids) for name in sums},
                            "timeline": policy.add_breakdowns(k["timeline"] for k in kids)}

    # map: only conversations of published base clusters carry a position
    base_ids = np.asarray(assignments.column(f"level_{n_levels - 1}").to_pylist(), dtype=object)
    on_map = np.fromiter((cid in published for cid in base_ids), dtype=bool, count=len(base_ids))
    points: dict[str, Any] = {"x": pa.array(x[on_map], type=pa.float32()), "y": pa.array(y[on_map], type=pa.float32())}
    position: dict[str, tuple[float, float]] = {}
    for level in range(n_levels):
        ids = np.asarray(assignments.column(f"level_{level}").to_pylist(), dtype=object)[on_map]
        points[f"level_{level}"] = pa.array([cid if cid in published else None for cid in ids.tolist()], type=pa.string())
        uniq, labels = np.unique(ids.astype(str), return_inverse=True) if len(ids) else (np.zeros(0, dtype=str), np.zeros(0, dtype=np.int64))
        counts = np.maximum(np.bincount(labels, minlength=len(uniq)), 1)
        cx = np.bincount(labels, weights=x[on_map], minlength=len(uniq)) / counts
        cy = np.bincount(labels, weights=y[on_map], minlength=len(uniq)) / counts
        position.update({cid: (round(float(a), 4), round(float(b), 4)) for cid, a, b in zip(uniq.tolist(), cx, cy)
                         if np.isfinite(a) and np.isfinite(b)})  # assign gives no position where its run published none

    def facet_data(node_id: str) -> dict[str, Any]:
        num = numbers[node_id]
        data: dict[str, Any] = {name: breakdown for name, breakdown in num["cat"].items() if breakdown}
        for name in numeric_facets:
            if num["n"][name]:
                data[name] = {"mean": round(num["sum"][name] / num["n"][name], 3), "n": num["n"][name], "hist": num["hist"][name]}
        return data

    out_clusters = []
    for c in nodes:
        num = numbers[c["id"]]
        timeline = sorted((k, v) for k, v in num["timeline"].items() if k != policy.OTHER)
        pos = position.get(c["id"]) if c["kind"] == "cluster" else None
        out_clusters.append({
            "id": c["id"], "level": c["level"], "parent": c["parent"], "kind": c["kind"], "name": c["name"], "description": c["description"],
            "size": c["size"], "accounts": c["accounts"], "x": pos[0] if pos else None, "y": pos[1] if pos else None,
            "audit": {"score": c["audit_score"]} if c["audit_score"] is not None else None,
            "facets": facet_data(c["id"]), "timeline": timeline if times else None,
            "timeline_suppressed": num["timeline"].get(policy.OTHER, 0) if times else None,
        })
    total = len(x)
    policy.link_published(out_clusters, total)

    withheld_convs = int(total - on_map.sum())
    facet_list = [{"name": n, "kind": "category"} for n in category_facets] + [
        {"name": n, "kind": "number", **numeric_facets[n].extra} for n in numeric_facets]
    hierarchy = ctx.store.stage_record("hierarchy") or {}
    ingest_report = (ctx.store.stage_record("ingest") or {}).get("report") or {}
    no_accounts = ingest_report.get("account_ids") == "absent" or bool(ingest_report.get("missing_account"))
    aggregates = {
        "run": {
            "mode": "llm" if config.llm_mode else "extractive",
            "facet": ctx.hierarchy_facet,
            "conversations": total,
            "accounts": int(len(set(accounts.tolist()))),
            "account_ids": "absent" if no_accounts else "present",
            "levels": n_levels,
            "level_sizes": hierarchy.get("sizes"),
            "min_accounts": min_acc,
            "min_conversations": config.privacy.min_conversations,
            "max_conversations_per_account": config.privacy.max_conversations_per_account,
            "max_account_share": config.privacy.max_account_share,
            "embedding_model": (ctx.store.stage_record("embed") or {}).get("model"),
            "time_range": _published_range(out_clusters) if times else None,
            "time_unit": time_unit,
        },
        "privacy_guarantee": guarantee_for_thresholds(config.privacy),
        "facets": facet_list,
        "facets_unavailable": unavailable,
        "clusters": out_clusters,
        "withheld": {
            "clusters": sum(1 for c in clusters if c["kind"] == "cluster" and not c["published"]),
            "conversations": withheld_convs,
        },
    }
    return aggregates, pa.table(points)


@dataclass(frozen=True)
class AggregatesRecord(StageRecord):
    """Nothing beyond the runner's keys: the release itself says what it holds."""


def _settings(ctx: RunContext) -> tuple:
    p = ctx.config.privacy
    # the DP settings only in DP mode, so threshold runs keep their fingerprints
    dp_settings = ("dp-aggregates-v5", len(ctx.config.facets.hierarchy_facets)) if p.mode == "dp" else ()
    return p.model_dump(exclude=set() if p.mode == "dp" else {"mode", "epsilon", "delta"}), [f.model_dump() for f in ctx.config.facets.custom], *dp_settings


def _aggregates(ctx: RunContext) -> StageOutput[AggregatesRecord]:
    if ctx.config.privacy.mode == "dp":
        from convoscope.dp_release import dp_aggregates

        aggregates, points = dp_aggregates(ctx)
    else:
        aggregates, points = build_aggregates(ctx)
    artifacts = [ctx.store.write_json("aggregates", aggregates), ctx.store.write_table("points", points)]
    return StageOutput(artifacts, AggregatesRecord())


AGGREGATES = Stage("aggregates", _settings, _aggregates)


def run_aggregates(ctx: RunContext, upstream: str) -> str:
    return run_stage(AGGREGATES, ctx, upstream)
