"""Attacks 4 (differencing) and 5 (numeric metadata) of issue 11: nothing withheld is recoverable by
subtracting published numbers, and no published cell rests on fewer than min_accounts accounts."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest

from privacy.harness import (GHOST_DAY, LONE_DAY, MIN_ACCOUNTS, attack_dataset, internal, invoke, json_of, published, report_json,
                             shared_run, timeline_dict)


@pytest.fixture(scope="module", params=["extractive", "llm"])
def run(request):
    return shared_run(request.param)


def _cells(c: dict[str, Any]) -> dict[str, dict[str, float]]:
    """Every additive cell of a published cluster: size, category counts, histogram bins and n, timeline."""
    cells: dict[str, dict[str, float]] = {"size": {"size": c["size"]}}
    for name, value in (c.get("facets") or {}).items():
        if isinstance(value, dict) and "hist" in value:
            cells[f"{name}.hist"] = {str(k): v for k, v in (value.get("hist") or {}).items()}
            cells[f"{name}.n"] = {"n": value.get("n") or 0}
        elif isinstance(value, dict):
            cells[name] = {str(k): v for k, v in value.items()}
    cells["timeline"] = timeline_dict(c.get("timeline"))
    return cells


def test_attack4a_parent_minus_children_reveals_nothing_withheld(run):
    checked = 0
    for facet in report_json(run.run_dir)["hierarchies"]:
        report = report_json(run.run_dir, facet)
        by_parent: dict[str, list[dict]] = {}
        for c in report["clusters"]:
            by_parent.setdefault(c["parent"], []).append(c)
        for parent in published(report):
            kids = by_parent.get(parent["id"], [])
            if not kids:
                continue
            children = [k for k in kids if k["kind"] == "cluster"]
            others = [k for k in kids if k["kind"] == "other"]
            assert len(others) <= 1
            other = others[0] if others else None
            if other is not None:
                assert (other.get("accounts") or 0) >= MIN_ACCOUNTS, f"{facet}/{other['id']}: a published remainder of {other.get('accounts')} accounts"
            other_cells = _cells(other) if other is not None else {}
            for key, total in _cells(parent).items():
                for cell, value in total.items():
                    rest = value - sum(_cells(k).get(key, {}).get(cell, 0) for k in children)
                    shown = other_cells.get(key, {}).get(cell, 0) if other is not None else 0
                    assert rest == shown, (f"{facet}/{parent['id']} '{parent['name']}' {key}[{cell}]: parent {value} - published children "
                                           f"= {rest}, but the published remainder shows {shown}: a withheld cluster is recoverable")
                    checked += 1
    assert checked
    # the planted situation occurs: a withheld base cluster (2 accounts) under a published parent
    tables = internal(run.run_dir)
    pub = {c["id"] for c in tables["clusters"] if c["published"]}
    assert any(not c["published"] and c["kind"] == "cluster" and c["parent"] in pub for c in tables["clusters"])


def test_attack4a_distinctive_signature_is_not_published(run):
    for facet in report_json(run.run_dir)["hierarchies"]:
        for c in report_json(run.run_dir, facet)["clusters"]:
            plans = (c.get("facets") or {}).get("meta.plan") or {}
            assert "diamond" not in plans, f"{facet}/{c['id']}: 'diamond' (2 accounts) is a published category"


FORBIDDEN_KEYS = ("top_account_share", "top3_account_share")


def _strings_and_keys(obj: Any, out: set[str]) -> set[str]:
    if isinstance(obj, dict):
        for k, v in obj.items():
            out.add(str(k))
            _strings_and_keys(v, out)
    elif isinstance(obj, list):
        for v in obj:
            _strings_and_keys(v, out)
    elif isinstance(obj, str):
        out.add(obj)
    return out


def test_attack4b_coordination_reports_only_published_clusters(run):
    for facet in report_json(run.run_dir)["hierarchies"]:
        result = invoke(["analyze", "coordination", str(run.run_dir), "--json", "--facet", facet, "--min-burst", "2", "--burst-z", "1",
                         "--min-template-accounts", "1", "--top", "1000"])
        assert result.exit_code == 0 and "Traceback" not in result.output, str(result)
        values = _strings_and_keys(json_of(result.output), set())
        bad_keys = [k for k in values if any(f in k for f in FORBIDDEN_KEYS)]
        assert not bad_keys, f"coordination publishes exact per-account counts: {bad_keys}"
        withheld = {c["id"] for c in internal(run.run_dir, facet)["clusters"] if not c["published"]}
        withheld_names = {c["name"] for c in internal(run.run_dir, facet)["clusters"] if not c["published"] and c["name"]}
        published_names = {c["name"] for c in published(report_json(run.run_dir, facet))}
        shown = (values & withheld) | ((values & withheld_names) - published_names)
        assert not shown, f"coordination names clusters withheld by the gates: {sorted(shown)[:10]}"


def _numbers(obj: Any, path: str = "") -> dict[str, float]:
    out: dict[str, float] = {}
    if isinstance(obj, dict):
        for k, v in obj.items():
            out.update(_numbers(v, f"{path}/{k}"))
    elif isinstance(obj, list):
        for i, v in enumerate(obj):
            out.update(_numbers(v, f"{path}[{i}]"))
    elif isinstance(obj, (int, float)) and not isinstance(obj, bool):
        out[path] = obj
    return out


def test_attack4c_split_is_rounded_to_published_buckets(run):
    for facet in report_json(run.run_dir)["hierarchies"]:
        outs = []
        for split in ("2026-03-10T11:59:59", "2026-03-10T12:00:01"):
            result = invoke(["compare", str(run.run_dir), "--split-at", split, "--json", "--facet", facet, "--top", "1000"])
            assert result.exit_code == 0 and "Traceback" not in result.output, str(result)
            outs.append(json_of(result.output))
        a, b = (_numbers(o) for o in outs)
        diff = {k: (a.get(k), b.get(k)) for k in set(a) | set(b) if a.get(k) != b.get(k)}
        assert not diff, f"{facet}: splits 2 seconds apart give different counts (3 conversations isolated): {sorted(diff.items())[:8]}"
        text = json.dumps(outs[0])
        assert "2026-03-10" in text and "11:59:59" not in text, "the result does not say which (rounded) date it used"


@pytest.fixture(scope="module")
def without_ghost():
    return shared_run("extractive", "no-ghost", records_fn=lambda: attack_dataset(ghost=False))


def _top_level_sum(run_dir) -> dict[str, int]:
    total: dict[str, int] = {}
    report = report_json(run_dir)
    for c in published(report, 0):
        for day, n in timeline_dict(c.get("timeline")).items():
            total[day] = total.get(day, 0) + n
    return total


def test_attack4d_two_runs_differing_by_one_account(without_ghost):
    with_ghost = shared_run("extractive")
    a, b = _top_level_sum(with_ghost.run_dir), _top_level_sum(without_ghost.run_dir)
    # The day must not show the difference. When the run publishes week or month buckets the day is not
    # a bucket at all, but the coarser bucket holding it still differs by the account's conversations:
    # across runs, only noise (the differential-privacy mode of a later issue) hides that (docs/privacy.md).
    day = next((k for k in set(a) | set(b) if k.startswith(GHOST_DAY)), GHOST_DAY)
    assert a.get(day, 0) == b.get(day, 0), (f"summed top-level timelines on {GHOST_DAY}: {a.get(day, 0)} with the account, "
                                           f"{b.get(day, 0)} without: one account's day is revealed")
    # and compare RUN OTHER_RUN shows nothing either (and does not crash)
    result = invoke(["compare", str(with_ghost.run_dir), str(without_ghost.run_dir), "--json", "--top", "1000"])
    assert "Traceback" not in result.output


def test_attack5_numeric_bins_are_not_raw_outliers(run):
    for facet in report_json(run.run_dir)["hierarchies"]:
        report = report_json(run.run_dir, facet)
        for c in report["clusters"]:
            age = (c.get("facets") or {}).get("meta.age") or {}
            keys = [str(k) for k in (age.get("hist") or {})]
            assert not any("131" in k for k in keys), f"{facet}/{c['id']}: an age of 131 (one person) is a bin label: {keys}"
            # edges are rounded (fixed or quantile), never raw min + i * (max - min) / 5: 18, 40.6, 63.2, ... gives 131 away
            numbers = [n for k in keys for n in re.findall(r"\d+(?:\.\d+)?", k)]
            assert all("." not in n for n in numbers), f"{facet}/{c['id']}: age bins derived from the raw min/max: {keys}"
            assert "131" not in json.dumps(age), f"{facet}/{c['id']}: {age}"
        for f in report["facets"]:
            assert "131" not in json.dumps(f), f


def test_attack5_lone_account_day_is_not_a_published_bucket(run):
    for facet in report_json(run.run_dir)["hierarchies"]:
        for c in report_json(run.run_dir, facet)["clusters"]:
            days = [d for d in timeline_dict(c.get("timeline")) if d.startswith(LONE_DAY)]
            assert not days, f"{facet}/{c['id']} '{c['name']}': the timeline has {LONE_DAY}, when one account alone was active"
