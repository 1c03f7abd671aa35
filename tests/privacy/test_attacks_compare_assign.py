"""Attack on `compare RUN NEW_RUN` where NEW_RUN is an assign output (the two share cluster ids): a cluster
NEW_RUN withheld must read the same whether it held a small group's conversations or none at all, so
comparing RUN with two assign outputs that differ by that group tells nothing about it (neither its count,
nor whether it is 0, nor its words)."""

from __future__ import annotations

import json

import pytest

from convoscope.assign import assign
from convoscope.pipeline import run_pipeline
from convoscope.store import RunStore
from privacy.harness import invoke
from test_analyses_data import small_config, write_input
from test_assign import PLANTED, POOL, SMALL_GROUP, records


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("compare-assign")
    run_input = write_input(root / "run.jsonl", records([("cooking", 100, POOL), ("tax", 100, POOL), ("python", 100, POOL)], 0, "r"))
    run_pipeline(run_input, root / "run", small_config(), show_progress=False)
    common = records([("cooking", 50, POOL), ("tax", 50, POOL)], 1, "n")
    group = records([("python", 12, SMALL_GROUP)], 2, "g", planted_in="python")  # two accounts: below every gate
    without = write_input(root / "without.jsonl", common)
    with_group = write_input(root / "with.jsonl", common + group)
    assign(root / "run", without, root / "new-without", show_progress=False)
    assign(root / "run", with_group, root / "new-with", show_progress=False)
    return root


def _compare(run, other, *extra) -> str:
    result = invoke(["compare", str(run), str(other), "--top", "1000", *extra])
    assert result.exit_code == 0 and "Traceback" not in result.output, result.output
    return result.output


def _rows(output: str) -> dict[str, tuple]:
    # what a cluster's row says apart from the shares (the total number of conversations is published, so
    # every share moves with it): its status and its counts
    return {r["before_id"] or r["after_id"]: (r["status"], r["before"], r["after"]) for r in json.loads(output)["clusters"]}


def _held(run_dir) -> set[str]:
    """Internal: every node holding a conversation of the run (any level)."""
    table = RunStore(run_dir).read_table("assignments")
    return {cid for name in table.column_names if name.startswith("level_") for cid in table.column(name).to_pylist()}


@pytest.mark.parametrize("order", ["run first", "run second"])
def test_attack_compare_with_assign_outputs_differing_by_a_withheld_group(runs, order):
    outputs = {}
    for name in ("new-without", "new-with"):
        pair = (runs / "run", runs / name) if order == "run first" else (runs / name, runs / "run")
        outputs[name] = (_compare(*pair, "--json"), _compare(*pair))
    assert all(PLANTED not in text for pair in outputs.values() for text in pair)
    without, with_group = _rows(outputs["new-without"][0]), _rows(outputs["new-with"][0])
    # the clusters only the group's conversations reached: empty in one output, withheld in the other
    only_group = (_held(runs / "new-with") - _held(runs / "new-without")) & set(with_group)
    assert only_group, "the planted group reached no cluster of RUN's release"
    side = 2 if order == "run first" else 1
    for cid in only_group:
        assert with_group[cid] == without[cid], cid  # 0 and a withheld count read the same
        assert with_group[cid][0] == "not published" and with_group[cid][side] is None, cid
