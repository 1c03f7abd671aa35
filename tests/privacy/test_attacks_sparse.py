"""Findings of the second review (2026-11-30): sparse values and stray dates.

A mean over one account's values is that person's value; a field a single conversation has names that
conversation's presence; undated conversations were size minus timeline; one stray date set the run's
time range and coarsened every timeline. Each is planted into the real-data background and checked in
`report --json` (the release every output reads).
"""

from __future__ import annotations

import json

import pytest

from privacy.harness import MIN_ACCOUNTS, background, config_file, invoke, json_of, write_records

INCOME_BASE = 50007  # 13 accounts, one conversation each, all values different


@pytest.fixture(scope="module", params=["thresholds", "dp"])
def report(tmp_path_factory, request):
    """The planted run in threshold mode and in differential privacy mode (issue 16)."""
    root = tmp_path_factory.mktemp(f"sparse-{request.param}")
    records = background()
    seen: set[str] = set()
    for r in records:
        if r["user"] not in seen and len(seen) < 13:
            seen.add(r["user"])
            r["income"] = INCOME_BASE + 1234 * len(seen)
    records[500]["vip"] = "yes"
    del records[700]["created_at"]
    records[900]["created_at"] = "2019-06-15T10:00:00+00:00"
    write_records(root / "in.jsonl", records)
    dp_args = ["--privacy", "dp", "--epsilon", "1"] if request.param == "dp" else []
    result = invoke(["run", str(root / "in.jsonl"), "--out", str(root / "run"), "--config", str(config_file(root)), *dp_args])
    assert result.exit_code == 0, result.output
    return json_of(invoke(["report", str(root / "run"), "--json"]).output)


def test_no_mean_over_too_few_accounts(report):
    for c in report["clusters"]:
        income = (c.get("facets") or {}).get("meta.income")
        if income:  # 13 conversations of 13 accounts spread over clusters: a mean needs min_accounts of them
            assert income["n"] >= MIN_ACCOUNTS, (c["id"], income)
            assert round(income["mean"]) not in {INCOME_BASE + 1234 * k for k in range(1, 14)}


def test_a_field_one_conversation_has_is_not_named(report):
    assert "meta.vip" not in json.dumps(report)


def test_breakdowns_and_timelines_add_up_to_the_size(report):
    for c in report["clusters"]:
        for name, facet in (c.get("facets") or {}).items():
            cells = facet["hist"] if "hist" in facet else facet  # missing values count in "other"
            assert sum(cells.values()) == c["size"], (c["id"], name, cells)
        if c.get("timeline") is not None:
            assert sum(n for _, n in c["timeline"]) + c["timeline_suppressed"] == c["size"], c["id"]


def test_a_stray_date_neither_sets_the_range_nor_coarsens_the_timelines(report):
    run = report["run"]
    if report["privacy_guarantee"]["mode"] == "dp" and run["time_range"] is None:
        return  # DP mode released no month bucket at all (small run, epsilon 1): no range to be set by the stray date
    assert not run["time_range"][0].startswith("2019"), run["time_range"]
    assert run["time_unit"] != "month" or all(not b.startswith("2019") for c in report["clusters"] for b, _ in c.get("timeline") or [])


def test_template_groups_never_isolate_the_rest_of_their_cluster(tmp_path):
    """10 accounts x 2 near-identical requests plus one lonely account with 2 related ones: the group's
    counts beside its cluster's would isolate the lonely account's conversations (review finding 5)."""
    from privacy.harness import record, spread_times

    records = background()
    times = spread_times(40, 11)
    template = "Please cancel my Zentrafone mobile subscription effective immediately and refund the last invoice"
    endings = ["", ".", "!", " now", " today", " thanks", " asap", " pls", " thank you", " please"]
    records += [record(f"tp-{a}-{k}", template + endings[a] + (" " + "x" * k if k else ""), f"plant-t-{a}", times[a * 2 + k])
                for a in range(10) for k in range(2)]
    records += [record(f"tl-{k}", text, "plant-lonely", times[30 + k]) for k, text in enumerate([
        "My Zentrafone mobile subscription keeps billing me twice, how do I dispute the charge with my bank",
        "Zentrafone mobile subscription cancelled but they still invoice me, can I report them to the regulator"])]
    write_records(tmp_path / "in.jsonl", records)
    assert invoke(["run", str(tmp_path / "in.jsonl"), "--out", str(tmp_path / "run"), "--config", str(config_file(tmp_path))]).exit_code == 0
    result = json_of(invoke(["analyze", "coordination", str(tmp_path / "run"), "--json", "--min-template-accounts", "1", "--top", "1000"]).output)
    sizes = {c["id"]: (c["size"], c["accounts"]) for c in json_of(invoke(["report", str(tmp_path / "run"), "--json"]).output)["clusters"]}
    for group in result["templates"]["groups"]:
        if group["group_size"] is None:
            continue
        size, accounts = sizes[group["id"]]
        rest_size, rest_accounts = size - group["group_size"], accounts - group["accounts"]
        assert rest_size == 0 or rest_accounts >= MIN_ACCOUNTS, (group, size, accounts)


def test_error_messages_do_not_print_record_text(tmp_path):
    """A misplaced column can put conversation text where a label belongs (a role, a timestamp, a key):
    errors name the field and describe the value, they do not print it (review finding 7)."""
    secret = "SECRET my neighbour Quentin Blatherwick owes me money " * 20
    cases = {
        "role.jsonl": {"messages": [{"role": secret, "content": "hi"}], "user": "a"},
        "time.jsonl": {"text": "hello", "created_at": secret, "user": "a"},
        "keys.jsonl": {secret: 1, "other": 2},
    }
    for name, record in cases.items():
        (tmp_path / name).write_text(json.dumps(record) + "\n")
        result = invoke(["run", str(tmp_path / name), "--out", str(tmp_path / f"run-{name}")])
        assert result.exit_code != 0 and "Blatherwick" not in result.output, (name, result.output)
        assert "not shown" in result.output, (name, result.output)
