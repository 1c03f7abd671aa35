"""Attacks 1 and 2 of issue 11: one account dominating a cluster, records without an account id."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest

from privacy.harness import (DOMINANT, MIN_ACCOUNTS, MIN_CONVERSATIONS, attack2_no_account, background, config_file, found, internal,
                             invoke, members, published, report_json, shared_run, write_records, _tmpdir)

from convoscope import dp
from convoscope.dp_release import COUNT_SHARES

MAX_ACCOUNT_SHARE = 0.5  # privacy.max_account_share default
MAX_PER_ACCOUNT = 3      # privacy.max_conversations_per_account default
BANKRUPTCY = ["Thaddeus", "Ockelbridge", "bankruptcy trustee"]
DP_ARGS = ("--privacy", "dp", "--epsilon", "1")  # the same DP run as test_attacks_names.py (shared_run caches it by name)


@pytest.fixture(scope="module", params=["extractive", "llm", "dp-extractive"])
def run(request):
    if request.param.startswith("dp-"):
        return shared_run(request.param.removeprefix("dp-"), name="attacks-dp", extra_args=DP_ARGS)
    return shared_run(request.param)


def test_attack1_dominating_account_is_never_named(run):
    leaked = found(run.outputs(), DOMINANT)
    assert not leaked, f"one account's 25 conversations (+4 cover accounts) published his name: {leaked}"


def _dp_bounded_per_account(run) -> None:
    """DP mode has no account-share gate: contribution bounding is what stops one account. Every released
    number counts at most `cap` conversations per account (dp.bounded_mask, the same keyed choice), so the
    dominant account weighs at most `cap` in any size, and each published size is its bounded count plus noise."""
    report = report_json(run.run_dir)
    g = report["privacy_guarantee"]
    cap = g["max_conversations_per_account"]
    assert cap == MAX_PER_ACCOUNT, g
    tables = internal(run.run_dir)
    account = {c["conv_id"]: c["account"] for c in tables["conversations"]}
    conv_ids = [row["conv_id"] for row in tables["assignments"]]
    _, account_index = np.unique([account[c] for c in conv_ids], return_inverse=True)
    kept = {c for c, keep in zip(conv_ids, dp.bounded_mask(conv_ids, account_index.reshape(-1), cap, seed=0)) if keep}
    dominant = {account[c] for c in conv_ids if c.startswith("a1-main-")}
    assert len(dominant) == 1 and sum(1 for c in conv_ids if c.startswith("a1-main-")) == 25
    assert sum(1 for c in kept if account[c] in dominant) == cap, "the dominant account's 25 conversations are not bounded to cap"
    groups = members(run.run_dir)
    size_scale = dp.gaussian_scale(cap, g["split"]["cluster_counts"]["rho"] * COUNT_SHARES["sizes"])
    base = report["levels"] - 1
    for c in published(report, base):
        bounded = sum(1 for conv, _ in groups[c["id"]] if conv in kept)
        raw = len(groups[c["id"]])
        # 5 deviations: a chance of about 1e-6 per cluster of a false failure
        assert abs(c["size"] - bounded) <= 5 * size_scale, f"{c['id']}: released size {c['size']}, bounded count {bounded} (raw {raw})"
    assert sum(c["size"] for c in published(report, base)) < len(conv_ids), "published sizes do not count bounded conversations"


def test_attack1_published_clusters_are_bounded_per_account(run):
    if (report_json(run.run_dir).get("privacy_guarantee") or {}).get("mode") == "dp":
        _dp_bounded_per_account(run)
        return
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


@pytest.mark.parametrize("privacy_args", [(), DP_ARGS], ids=["thresholds", "dp"])
def test_attack2_run_refuses_records_without_account(no_account_input, privacy_args):
    result = invoke(["run", str(no_account_input), "--out", str(no_account_input.parent / f"refused{len(privacy_args)}"), "--quiet",
                     "--config", str(config_file(no_account_input.parent)), *privacy_args])
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


@pytest.mark.parametrize("mode", ["extractive", "llm", "dp-extractive"])
def test_attack2_pooled_records_are_one_account(no_account_input, mode):
    def pooled():
        return background() + attack2_no_account()

    dp_mode = mode.startswith("dp-")
    run = shared_run(mode.removeprefix("dp-"), "pooled-dp" if dp_mode else "pooled", records_fn=pooled,
                     extra_args=["--pool-missing-accounts", *(DP_ARGS if dp_mode else ())])
    leaked = found(run.outputs(), BANKRUPTCY)
    assert not leaked, f"20 records of one (pooled) account were published: {leaked}"
    report = report_json(run.run_dir)
    if dp_mode:  # DP's account count is noisy; what bounds the pool is that it is one account, so it weighs at most cap
        tables = internal(run.run_dir)
        pool = {c["account"] for c in tables["conversations"] if c["conv_id"].startswith("a2-")}
        assert len(pool) == 1 and report["privacy_guarantee"]["max_conversations_per_account"] == MAX_PER_ACCOUNT, pool
        assert "note" not in report["privacy_guarantee"], "the input has account ids: conversations are not their own accounts"
        return
    assert report["run"]["accounts"] <= 151  # 150 background accounts + one pool
