"""Attack 10 of issue 11: one low audit score at the top must not hide the children that passed."""

from __future__ import annotations

import pytest

from privacy.adversarial_llm import PARENT_MARKER
from privacy.harness import background, found, published, report_json, shared_run

WITHHELD_NAME = "Name withheld"


@pytest.fixture(scope="module")
def run():
    # the fake puts PARENT_MARKER in every parent name (propose/dedupe/rename), and its auditor rates
    # 1 any text with the marker and 5 everything else
    return shared_run("llm", "parent-marker", records_fn=background, parent_marker=True)


def test_attack10_children_that_pass_stay_published_under_a_neutral_parent(run):
    report = report_json(run.run_dir)
    base = report["levels"] - 1
    assert base >= 1
    children = published(report, base)
    assert children, "every base cluster passed its own audit, yet none is published under the parents that failed theirs"
    parents = {c["id"]: c for c in report["clusters"] if c["level"] < base}
    for child in children:
        parent = parents.get(child["parent"])
        assert parent is not None and parent["kind"] == "cluster", f"{child['id']} has no published (neutral) parent"
        assert parent["name"] == WITHHELD_NAME, parent["name"]
        assert not (parent.get("description") or "").strip() or PARENT_MARKER not in parent["description"]
        assert not found(parent.get("description") or "", ["Help with", "Users asked"]), f"model text in a withheld parent: {parent['description']}"


def test_attack10_failing_parent_names_are_never_published(run):
    assert PARENT_MARKER.lower() not in run.outputs().lower()
