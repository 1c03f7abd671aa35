"""Attacks 4 (differencing) and 5 (numeric metadata) of issue 11: nothing withheld is recoverable by
subtracting published numbers, and no published cell rests on fewer than min_accounts accounts."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest

from privacy.harness import (GHOST_DAY, LONE_DAY, MIN_ACCOUNTS, attack4d_ghost, attack_dataset, internal, invoke, json_of, published,
                             report_json, shared_run, timeline_dict, words)
from convoscope import dp
from convoscope.dp_release import COUNT_SHARES

DP_ARGS = ("--privacy", "dp", "--epsilon", "1")  # the same DP run as test_attacks_names.py (shared_run caches it by name)


@pytest.fixture(scope="module", params=["extractive", "llm", "dp-extractive"])
def run(request):
    if request.param.startswith("dp-"):
        return shared_run(request.param.removeprefix("dp-"), name="attacks-dp", extra_args=DP_ARGS)
    return shared_run(request.param)


def _guarantee(run_dir) -> dict[str, Any] | None:
    """The release's DP guarantee, or None for a threshold-mode run."""
    g = report_json(run_dir).get("privacy_guarantee") or {}
    return g if g.get("mode") == "dp" else None


def _size_noise_scale(g: dict[str, Any]) -> float:
    """Standard deviation of the Gaussian noise on every released base cluster size (and so on every
    difference of sizes): the sizes' share of the cluster_counts budget, sensitivity `cap`."""
    return dp.gaussian_scale(g["max_conversations_per_account"], g["split"]["cluster_counts"]["rho"] * COUNT_SHARES["sizes"])


def _cells(c: dict[str, Any], numeric: tuple[str, ...] = ()) -> dict[str, dict[str, float]]:
    """Every additive cell of a published cluster: size, category counts, histogram bins and n, timeline.
    A numeric facet in `numeric` that the cluster does not show (its values gated: too few accounts or one
    dominant) counts whole in its parent's "other" bin (stages/aggregates.py), so it is modelled so here."""
    cells: dict[str, dict[str, float]] = {"size": {"size": c["size"]}}
    for name in numeric:
        if name not in (c.get("facets") or {}) and c["size"]:
            cells[f"{name}.hist"], cells[f"{name}.n"] = {"other": c["size"]}, {"n": 0}
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
            numeric = tuple(f["name"] for f in report["facets"] if f.get("kind") == "number")
            other_cells = _cells(other, numeric) if other is not None else {}
            for key, total in _cells(parent).items():
                for cell, value in total.items():
                    rest = value - sum(_cells(k, numeric).get(key, {}).get(cell, 0) for k in children if k["kind"] == "cluster")
                    shown = other_cells.get(key, {}).get(cell, 0) if other is not None else 0
                    assert rest == shown, (f"{facet}/{parent['id']} '{parent['name']}' {key}[{cell}]: parent {value} - published children "
                                           f"= {rest}, but the published remainder shows {shown}: a withheld cluster is recoverable")
                    checked += 1
    g = _guarantee(run.run_dir)
    if g is not None:
        # DP: the tree adds up exactly (checked above wherever there is a parent), and what subtraction yields is
        # noisy: the noise on a size covers many times what the planted 2 accounts (at most 2 x cap) contribute
        assert _size_noise_scale(g) >= 4 * 2 * g["max_conversations_per_account"], g
        report = report_json(run.run_dir)  # and at the root: the header's total is the sum of the top level, nothing left over
        assert report["run"]["conversations"] == sum(c["size"] for c in report["clusters"] if c["parent"] is None), report["run"]
        return
    assert checked
    # the planted situation occurs: a withheld base cluster (2 accounts) under a published parent
    tables = internal(run.run_dir)
    pub = {c["id"] for c in tables["clusters"] if c["published"]}
    assert any(not c["published"] and c["kind"] == "cluster" and c["parent"] in pub for c in tables["clusters"])


@pytest.fixture(scope="module")
def dominated_remainder(tmp_path_factory):
    """A topic one account dominates (25 of its 42 conversations; 6 accounts 2 each aged 19, 5 accounts 1 each
    aged 70 like the dominant one): its base cluster is withheld (share cap) and lands in its parent's
    remainder, whose numeric values are then gated. The remainder's own histogram would show a passing
    "<28" bin of 12 (its ">=60" bin fails for the dominant account's share, with 6 accounts beside it)."""
    import random as _random

    from privacy.harness import background, config_file, write_records

    root = tmp_path_factory.mktemp("dominated-remainder")
    records, rng = background(), _random.Random(1)
    topics = ["What pH should the water of my axolotl tank have", "How cold must an axolotl aquarium be kept",
              "Which filter is gentle enough for an axolotl tank", "Can axolotls share an aquarium with shrimp",
              "How often do I change the water in an axolotl tank"]
    for i in range(25):
        records.append({"id": f"dom-{i}", "user": "acct-dominant", "created_at": f"2024-03-0{1 + i % 9}T10:00:00+00:00",
                        "text": f"{rng.choice(topics)}? (tank {i})", "age": 70})
    for a in range(6):
        for j in range(2):
            records.append({"id": f"few-{a}-{j}", "user": f"acct-axo-{a}", "created_at": "2024-03-05T10:00:00+00:00",
                            "text": f"{rng.choice(topics)}? (mine {a}{j})", "age": 19})
    for a in range(5):  # the dominant account's bin then holds 6 accounts: hidden for its share, not for its accounts
        records.append({"id": f"old-{a}", "user": f"acct-old-{a}", "created_at": "2024-03-06T10:00:00+00:00",
                        "text": f"{rng.choice(topics)}? (old {a})", "age": 70})
    write_records(root / "in.jsonl", records)
    result = invoke(["run", str(root / "in.jsonl"), "--out", str(root / "run"), "--config", str(config_file(root))])
    assert result.exit_code == 0, result.output
    return root / "run"


def test_attack4a_a_remainder_gated_for_one_account_is_not_recovered_from_its_parent(dominated_remainder):
    report = report_json(dominated_remainder)
    kids: dict[str, list[dict]] = {}
    for c in report["clusters"]:
        kids.setdefault(c["parent"], []).append(c)
    gated = [c for c in report["clusters"] if c["kind"] == "other" and "meta.age" not in (c.get("facets") or {})]
    assert any(c["accounts"] >= 12 and c["size"] >= 42 for c in gated), "the planted remainder is not there: the test needs new data"
    for parent in published(report):
        if not kids.get(parent["id"]) or "meta.age" not in (parent.get("facets") or {}):
            continue
        parts: dict[str, float] = {}
        for k in kids[parent["id"]]:
            for cell, n in _cells(k, ("meta.age",)).get("meta.age.hist", {}).items():
                parts[cell] = parts.get(cell, 0) + n
        # the parent's histogram is exactly the sum of what its parts show (a gated part: all "other")
        assert {k: v for k, v in parent["facets"]["meta.age"]["hist"].items() if v} == {k: v for k, v in parts.items() if v}, parent["id"]


def test_attack4a_other_beside_named_cells_is_never_a_small_group(run):
    """A breakdown's "other" beside named cells is the cluster minus them: it must hold min_accounts
    accounts, or subtracting isolates the few conversations with a rare value (a rare language, a
    metadata value of two accounts). When the rare values alone are too few, conversations of the
    largest cell join "other" (policy.threshold_cell_members), so "other" is never under MIN_ACCOUNTS."""
    if _guarantee(run.run_dir) is not None:
        pytest.skip("DP release: its cells are noisy counts, not thresholded ones")
    beside = 0
    for facet in report_json(run.run_dir)["hierarchies"]:
        for c in published(report_json(run.run_dir, facet)):
            for key, cells in _cells(c).items():
                if key in ("size", "timeline") or key.endswith(".n") or "other" not in cells or len(cells) < 2:
                    continue
                beside += 1
                assert cells["other"] >= MIN_ACCOUNTS, f"{facet}/{c['id']} {key}: other = {cells['other']} beside {cells}"
                assert all(v >= MIN_ACCOUNTS for v in cells.values()), f"{facet}/{c['id']} {key}: {cells}"
    assert beside  # the attack data has rare values beside common ones


def test_attack4a_distinctive_signature_is_not_published(run):
    dp_mode = _guarantee(run.run_dir) is not None
    for facet in report_json(run.run_dir)["hierarchies"]:
        for c in report_json(run.run_dir, facet)["clusters"]:
            if dp_mode:  # DP releases no metadata field at all (names and values are not a public domain)
                assert not [k for k in (c.get("facets") or {}) if k.startswith("meta.")], f"{facet}/{c['id']}: {c.get('facets')}"
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
        if _guarantee(run.run_dir) is not None:  # DP: coordination counts conversations outside the release, so it refuses
            assert result.exit_code != 0 and "Traceback" not in result.output, str(result)
            assert "differential-privacy" in result.output and "--privacy thresholds" in result.output, str(result)
            assert "{" not in result.output, f"a refused coordination analysis still printed a result: {result}"
            continue
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
        unit = report_json(run.run_dir, facet)["run"].get("time_unit")
        for split in ("2026-03-10T11:59:59", "2026-03-10T12:00:01"):
            result = invoke(["compare", str(run.run_dir), "--split-at", split, "--json", "--facet", facet, "--top", "1000"])
            if unit is None and _guarantee(run.run_dir) is not None:
                # DP: no (cluster, month) passed partition selection, so there is no timeline to split: a clean refusal
                assert result.exit_code != 0 and "Traceback" not in result.output and "cannot be split by date" in result.output, str(result)
                continue
            assert result.exit_code == 0 and "Traceback" not in result.output, str(result)
            outs.append(json_of(result.output))
        if not outs:
            continue
        a, b = (_numbers(o) for o in outs)
        diff = {k: (a.get(k), b.get(k)) for k in set(a) | set(b) if a.get(k) != b.get(k)}
        assert not diff, f"{facet}: splits 2 seconds apart give different counts (3 conversations isolated): {sorted(diff.items())[:8]}"
        text = json.dumps(outs[0])
        rounded = "2026-03" if unit == "month" else "2026-03-10"  # DP timelines are months
        assert rounded in text and "11:59:59" not in text, "the result does not say which (rounded) date it used"


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


@pytest.fixture(scope="module")
def dp_without_ghost():
    return shared_run("extractive", "no-ghost-dp", records_fn=lambda: attack_dataset(ghost=False), extra_args=DP_ARGS)


def _publish_threshold(report: dict[str, Any]) -> float:
    """The noisy account count a DP cluster needs (min_accounts plus two noise deviations, dp_release.dp_privacy)."""
    g, levels = report["privacy_guarantee"], report["levels"]
    cap = g["max_conversations_per_account"]
    scale = dp.gaussian_scale((cap * levels) ** 0.5, g["split"]["cluster_counts"]["rho"] * COUNT_SHARES["accounts"])
    return dp.publish_threshold(report["run"]["min_accounts"], scale)


def test_attack4d_dp_two_runs_differing_by_one_account(dp_without_ghost):
    """Two DP runs (fresh noise each) on data that differ by the ghost account: nothing in either release
    exists only because of that account; what differs is noise."""
    with_ghost = shared_run("extractive", name="attacks-dp", extra_args=DP_ARGS)
    ghost_only = ({w.lower() for r in attack4d_ghost() for w in words(r["text"])}
                  - {w.lower() for r in attack_dataset(ghost=False) for w in words(r["text"])})
    assert ghost_only, "the ghost account has no word of its own: the name check below would test nothing"
    for run_dir in (with_ghost.run_dir, dp_without_ghost.run_dir):
        report = report_json(run_dir)
        assert report["privacy_guarantee"]["mode"] == "dp"
        # a word only the ghost used cannot pass partition selection (it needs many accounts), in any name or cell
        text = json.dumps(report).lower()
        leaked = [w for w in ghost_only if re.search(rf"\b{re.escape(w)}\b", text)]
        assert not leaked, f"{run_dir}: a word only the ghost account used is in the release: {leaked}"
        # a cluster is shown only when its noisy account count is well above min_accounts: one account cannot make one
        threshold = _publish_threshold(report)
        low = [(c["id"], c["accounts"]) for c in published(report) if c["accounts"] < threshold]
        assert not low, f"{run_dir}: published clusters below the noisy account threshold {threshold:.1f}: {low}"
        # time buckets are months, never the ghost's day
        days = [d for d in _top_level_sum(run_dir) if d.startswith(GHOST_DAY) or not re.match(r"\d{4}-\d{2}-01", d)]
        assert not days, f"{run_dir}: timeline buckets finer than a month: {days}"
    result = invoke(["compare", str(with_ghost.run_dir), str(dp_without_ghost.run_dir), "--json", "--top", "1000"])
    assert "Traceback" not in result.output, str(result)


def test_attack5_numeric_bins_are_not_raw_outliers(run):
    if _guarantee(run.run_dir) is not None:  # DP releases no metadata field, so no age bins at all
        for facet in report_json(run.run_dir)["hierarchies"]:
            assert not [f for f in report_json(run.run_dir, facet)["facets"] if f["name"].startswith("meta.")]
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
    dp_mode = _guarantee(run.run_dir) is not None
    for facet in report_json(run.run_dir)["hierarchies"]:
        for c in report_json(run.run_dir, facet)["clusters"]:
            if dp_mode:  # DP timelines are months chosen by partition selection: never a day, let alone one account's
                assert all(re.fullmatch(r"\d{4}-\d{2}-01(T00:00:00(\+00:00)?)?", d) for d in timeline_dict(c.get("timeline"))), c["timeline"]
            days = [d for d in timeline_dict(c.get("timeline")) if d.startswith(LONE_DAY)]
            assert not days, f"{facet}/{c['id']} '{c['name']}': the timeline has {LONE_DAY}, when one account alone was active"
