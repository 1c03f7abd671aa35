"""Attacks 1 and 2 of issue 11: one account dominating a cluster, records without an account id."""

from __future__ import annotations

from collections import Counter

import pytest

from privacy.harness import (DOMINANT, MIN_ACCOUNTS, MIN_CONVERSATIONS, attack2_no_account, background, config_file, found, invoke,
                             members, published, report_json, shared_run, write_records, _tmpdir)

MAX_ACCOUNT_SHARE = 0.5  # privacy.max_account_share default
MAX_PER_ACCOUNT = 3      # privacy.max_conversations_per_account default
BANKRUPTCY = ["Thaddeus", "Ockelbridge", "bankruptcy trustee"]


@pytest.fixture(scope="module", params=["extractive", "llm"])
def run(request):
    return shared_run(request.param)


def test_attack1_dominating_account_is_never_named(run):
    leaked = found(run.outputs(), DOMINANT)
    assert not leaked, f"one account's 25 conversations (+4 cover accounts) published his name: {leaked}"


def test_attack1_published_clusters_are_bounded_per_account(run):
    groups = members(run.run_dir)
    for facet in report_json(run.run_dir)["hierarchies"]:
        report = report_json(run.run_dir, facet)
        groups = members(run.run_dir, facet)
        for c in published(report):
            assert c["accounts"] >= MIN_ACCOUNTS, c["id"]
            counts = Counter(account for _, account in groups[c["id"]])
            top = max(counts.values()) / sum(counts.values())
            assert top <= MAX_ACCOUNT_SHARE, f"{facet}/{c['id']} '{c['name']}': one account supplies {top:.0%} of it"
            bounded = sum(min(n, MAX_PER_ACCOUNT) for n in counts.values())
            assert bounded >= MIN_CONVERSATIONS, f"{facet}/{c['id']}: {bounded} conversations after bounding each account to {MAX_PER_ACCOUNT}"


@pytest.fixture(scope="module")
def no_account_input():
    directory = _tmpdir("attack2")
    return write_records(directory / "mixed.jsonl", background() + attack2_no_account())


def test_attack2_run_refuses_records_without_account(no_account_input):
    result = invoke(["run", str(no_account_input), "--out", str(no_account_input.parent / "refused"), "--quiet",
                     "--config", str(config_file(no_account_input.parent))])
    assert result.exit_code != 0, "a file mixing records with and without an account id was run silently"
    assert "Traceback" not in result.output
    assert "mixed.jsonl" in result.output and "--pool-missing-accounts" in result.output, result.output[-2000:]
    lines = [i + 1 for i, line in enumerate(no_account_input.read_text().splitlines()) if '"user"' not in line]
    assert f"mixed.jsonl:{lines[0]}" in result.output, f"the first record without an account is on line {lines[0]}: {result.output[-2000:]}"


def test_attack2_validate_counts_records_without_account(no_account_input):
    import json

    result = invoke(["validate", str(no_account_input), "--json"])
    assert "Traceback" not in result.output
    report = json.loads(result.output[result.output.index("{"):])
    counts = [v for k, v in report.items() if "account" in k and isinstance(v, int) and not isinstance(v, bool)]
    assert 20 in counts, f"validate does not count the 20 records without an account: {report}"
    text = invoke(["validate", str(no_account_input)]).output
    assert "20" in text and "account" in text.lower(), text


@pytest.mark.parametrize("mode", ["extractive", "llm"])
def test_attack2_pooled_records_are_one_account(no_account_input, mode):
    def pooled():
        return background() + attack2_no_account()

    run = shared_run(mode, "pooled", records_fn=pooled, extra_args=["--pool-missing-accounts"])
    leaked = found(run.outputs(), BANKRUPTCY)
    assert not leaked, f"20 records of one (pooled) account were published: {leaked}"
    report = report_json(run.run_dir)
    assert report["run"]["accounts"] <= 151  # 150 background accounts + one pool
