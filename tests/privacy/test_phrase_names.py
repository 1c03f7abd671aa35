"""Extractive phrase names (issue 14) pass the checks LLM names pass (policy.TextChecker), with and without
taxonomy labels, and the planted attacks of issue 11 stay unpublished when labels are on."""

from __future__ import annotations

import json

import numpy as np
import pytest

from privacy.harness import CONTACT, CRABTREE, LANDLORD, THEREMIN, found, shared_run
from convoscope import policy
from convoscope.config import Config
from convoscope.store import RunStore


@pytest.fixture(scope="module", params=["plain", "taxonomy"])
def run(request):
    if request.param == "taxonomy":
        return shared_run("extractive", name="attacks-taxonomy", extra_args=("--taxonomy", "default"))
    return shared_run("extractive")


def test_every_published_extractive_name_passes_the_text_checks(run):
    from convoscope.analysis_text import analysis_texts
    from convoscope.context import RunContext

    store = RunStore(run.run_dir)
    config = Config.model_validate(json.loads((run.run_dir / "manifest.json").read_text())["config"])
    ctx = RunContext(config=config, store=store, input_path=run.run_dir.parent / "input.jsonl", show_progress=False)
    texts = list(analysis_texts(ctx))
    accounts = store.read_table("conversations", columns=["account"]).column("account").to_pylist()
    _, account_index = np.unique(np.asarray(accounts, dtype=object), return_inverse=True)
    checker = policy.TextChecker(texts, account_index.reshape(-1), config.privacy)
    assignments = store.read_table("assignments")
    checked = 0
    for row in store.read_table("clusters").to_pylist():
        if row["kind"] != "cluster" or not row["published"] or row["name"] == policy.NAME_WITHHELD:
            continue
        ids = np.asarray(assignments.column(f"level_{row['level']}").to_pylist(), dtype=object)
        members = np.flatnonzero(ids == row["id"])
        assert checker.problems(f"{row['name']}\n{row['description']}", members) == [], row
        checked += 1
    assert checked >= 5


def test_names_have_a_head_and_details_and_attacks_stay_unpublished(run):
    rows = RunStore(run.run_dir).read_table("base_clusters").to_pylist()
    names = [r["name"] for r in rows]
    assert all(r["description"].startswith("Typical phrases: ") or r["name"] == "Miscellaneous requests" for r in rows), rows
    if "taxonomy" in str(run.run_dir):  # the option reaches the naming stage: some clusters are labelled
        from convoscope.taxonomy import load_taxonomy

        labels = {e.label for e in load_taxonomy("default")}
        assert any(n.split(": ")[0] in labels for n in names), names
    leaked = found(run.outputs(), LANDLORD + CONTACT + CRABTREE + THEREMIN)
    assert not leaked, f"planted details published: {leaked}"
