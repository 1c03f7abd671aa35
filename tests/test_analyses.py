"""Analyses over one real (extractive) pipeline run of synthetic data with planted effects.

One pipeline run per module (about a minute on 2 cores); every test reads it.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from test_analyses_data import BURST_DAY, NEW_TOPIC_FROM, SPAMMER, make_records, small_config, write_input
from typer.testing import CliRunner

from convoscope.analyses.classifier import classifier
from convoscope.analyses.common import AnalysisError, conversation_view, load_run
from convoscope.analyses.compare import compare_split
from convoscope.analyses.concerning import concerning
from convoscope.analyses.coordination import coordination
from convoscope.analyses.languages import languages
from convoscope.analyses.usage import usage


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory) -> Path:
    from convoscope.pipeline import run_pipeline

    root = tmp_path_factory.mktemp("analyses")
    records = make_records()
    src = write_input(root / "input.jsonl", records)
    run_pipeline(src, root / "run", small_config(), show_progress=False)
    return root / "run"


@pytest.fixture(scope="module")
def run(run_dir):
    return load_run(run_dir)


@pytest.fixture(scope="module")
def topic_of_cluster(run):
    """Majority planted topic per published cluster (the test knows the topics; the analyses don't)."""
    agg = run.aggregates
    out = {}
    for c in agg["clusters"]:
        topics = c["facets"].get("meta.topic") or {}
        if topics:
            top, n = max(topics.items(), key=lambda kv: kv[1])
            out[c["id"]] = (top, n / sum(topics.values()))
    return out


def _no_ids(text: str, run_dir: Path) -> None:
    """No conversation id, account hash or raw text may appear in an analysis' output."""
    from convoscope.store import RunStore

    conv = RunStore(run_dir).read_table("conversations")
    accounts = set(conv.column("account").to_pylist())
    assert SPAMMER not in text
    assert not any(a in text for a in accounts)
    assert "c00001" not in text and "order number" not in text and "glowing five star" not in text


def test_usage_shares_and_wilson(run, run_dir):
    result = usage(run)
    top = [r for r in result["clusters"] if r["level"] == 0 and r["kind"] == "cluster"]
    assert top and abs(sum(r["conversations"] for r in result["clusters"] if r["level"] == 0) - result["conversations"]) == 0
    for r in result["clusters"]:
        lo, hi = r["conversation_share_ci95"]
        assert lo <= r["conversation_share"] <= hi
        if r["account_share"] is not None:
            lo, hi = r["account_share_ci95"]
            assert lo <= r["account_share"] <= hi
    assert {r["level"] for r in result["clusters"]} == set(range(min(2, run.levels)))
    res = CliRunner().invoke(__import__("convoscope.analyses.cli", fromlist=["analyze_app"]).analyze_app, ["usage", str(run_dir), "--json"])
    assert res.exit_code == 0, res.output
    assert json.loads(res.output)["analysis"] == "usage"
    _no_ids(res.output, run_dir)


def test_languages_finds_spanish_concentrated(run, topic_of_cluster):
    result = languages(run, min_support=5, min_language=20)  # base level
    spanish = next(lang for lang in result["languages"] if lang["language"] == "Spanish")
    best = spanish["over_represented"][0]
    assert topic_of_cluster[best["id"]][0] == "travel"
    assert best["ratio"] > 2.5 and best["count"] >= 5
    # under-represented: a big non-travel cluster with an expected count >= 5 and (almost) no Spanish
    assert spanish["under_represented"]
    assert all(topic_of_cluster[e["id"]][0] != "travel" and e["ratio"] < 0.5 for e in spanish["under_represented"])
    # the support rule: no over-represented entry below min_support, no under entry with expected < min_support
    for lang in languages(run, min_support=8, min_language=20)["languages"]:
        assert all(e["count"] >= 8 for e in lang["over_represented"])
        assert all(e["expected"] >= 8 for e in lang["under_represented"])


def test_concerning_extractive_is_unavailable(run, run_dir):
    assert concerning(run) == {"analysis": "concerning", "available": False, "reason": "concerning scores needs an LLM (run with --llm)"}
    from convoscope.analyses.cli import analyze_app

    res = CliRunner().invoke(analyze_app, ["concerning", str(run_dir)], env={"COLUMNS": "200"})
    assert res.exit_code == 0 and "--llm" in res.output and "unavailable" in res.output
    res = CliRunner().invoke(analyze_app, ["concerning", str(run_dir), "--json"])
    assert res.exit_code == 0 and json.loads(res.output)["available"] is False


def test_coordination_concentration_never_shows_one_account(run, run_dir, topic_of_cluster):
    """The spammer's 120 reviews form a cluster one account dominates: the privacy gates withhold it
    (max_account_share), so no analysis can show it or any per-account figure."""
    from convoscope.store import RunStore

    internal = RunStore(run_dir).read_table("clusters").to_pylist()
    dominated = [c for c in internal if c["withheld_reason"] and "one account supplies" in c["withheld_reason"]]
    assert dominated, "the review cluster dominated by one account should be withheld"
    result = coordination(run)
    shown = {r["id"] for r in result["concentration"]["clusters"]}
    assert not shown & {c["id"] for c in dominated}
    assert "top_account_share" not in json.dumps(result)
    # flagged clusters are published clusters with a high published conversations-per-account rate
    for r in coordination(run, rate_ratio=1.0)["concentration"]["clusters"]:
        c = run.by_id[r["id"]]
        assert r["conversations_per_account"] == c["size"] / c["accounts"] >= result["overall_conversations_per_account"]


def test_coordination_templates_by_embedding(run, topic_of_cluster):
    result = coordination(run)
    groups = result["templates"]["groups"]
    seo = [g for g in groups if topic_of_cluster[g["id"]][0] == "seo"]
    assert seo, groups
    g = seo[0]
    # 50 variants from 40 accounts: counted, or (when the rest of its cluster is too small to publish
    # beside it) reported as nearly the whole cluster without counts
    assert (g["group_size"] is None and g["extent"] == "nearly all of the cluster") or (g["group_size"] >= 30 and g["accounts"] >= 20)
    # one account's 120 reviews are near-identical too, but from one account: not a cross-account template
    assert all(not (topic_of_cluster[x["id"]][0] == "reviews" and x["accounts"] < 5) for x in groups)


def test_coordination_burst(run):
    result = coordination(run)
    bursts = result["bursts"]
    # time buckets are the finest unit whose account-thresholded cells hold half the conversations: for
    # this small run (about 40 conversations per base cluster over 26 weeks) weeks or months
    from convoscope.policy import bucket_start

    assert bursts["available"] and bursts["unit"] in ("week", "month")
    assert bursts["bursts"], "the tax burst should be found"
    top = bursts["bursts"][0]
    burst_bucket = bucket_start(BURST_DAY, bursts["unit"])
    assert top["bucket"] == burst_bucket and top["z"] >= 4
    # the tax topic's parent shows it whole (its base clusters' bursts may rank above it by z)
    assert any(b["bucket"] == burst_bucket and b["count"] >= 30 and b["z"] >= 4 for b in bursts["bursts"])
    # nothing else bursts, except the crypto topic that only exists from NEW_TOPIC_FROM on (in month
    # buckets its first full months stand out against its own zero baseline before)
    others = [b for b in bursts["bursts"] if b["bucket"] != burst_bucket]
    assert all(b["bucket"] >= NEW_TOPIC_FROM.date().isoformat() and "crypto" in (run.by_id[b["id"]]["facets"].get("meta.topic") or {})
               for b in others), others


def test_coordination_json_has_no_ids(run_dir):
    from convoscope.analyses.cli import analyze_app

    res = CliRunner().invoke(analyze_app, ["coordination", str(run_dir), "--json"])
    assert res.exit_code == 0, res.output
    _no_ids(res.output, run_dir)
    res = CliRunner().invoke(analyze_app, ["coordination", str(run_dir)], env={"COLUMNS": "200"})
    assert res.exit_code == 0 and "Concentration" in res.output and "Bursts" in res.output
    _no_ids(res.output, run_dir)


def test_compare_split_finds_new_topic(run, topic_of_cluster, run_dir):
    # at the base level the crypto clusters appear from nothing, beyond noise
    result = compare_split(run, NEW_TOPIC_FROM)
    appeared = [r for r in result["clusters"] if r["status"] == "appeared" and r["beyond_noise"]]
    assert appeared and all(topic_of_cluster[r["after_id"]][0] == "crypto" for r in appeared)
    assert sum(r["after"] for r in appeared) >= 15  # only published (account-thresholded) timeline cells count
    for r in appeared:
        assert r["before"] == 0 and r["share_diff"] > 0 and r["z"] > 3
    # at the top level, the cluster holding the crypto conversations grew beyond noise
    top = compare_split(run, NEW_TOPIC_FROM, level=0)
    holder = max(run.clusters(0), key=lambda c: (c["facets"].get("meta.topic") or {}).get("crypto", 0))
    row = next(r for r in top["clusters"] if r["after_id"] == holder["id"])
    # the top cluster holding crypto either is crypto alone (appeared) or also holds older topics (grew)
    assert row["status"] in ("grew", "appeared") and row["beyond_noise"] and row["share_diff"] > 0.05
    published_cells = sum(n for c in run.clusters(run.base_level) + [o for o in run.clusters(include_other=True) if o["kind"] == "other"]
                          for _, n in c.get("timeline") or [])
    assert result["before"]["conversations"] + result["after"]["conversations"] == published_cells <= run.info["conversations"]
    from convoscope.analyses.cli import compare_command
    import typer

    app = typer.Typer()
    app.command()(compare_command)
    res = CliRunner().invoke(app, [str(run_dir), "--split-at", "2024-04-01"], env={"COLUMNS": "220"})
    assert res.exit_code == 0, res.output
    assert "appeared" in res.output or "grew" in res.output
    res = CliRunner().invoke(app, [str(run_dir), "--split-at", "2024-04-01", "--json"])
    assert json.loads(res.output)["mode"] == "split"
    res = CliRunner().invoke(app, [str(run_dir)])
    assert res.exit_code != 0 and isinstance(res.exception, AnalysisError)


def test_compare_split_outside_range_is_an_error(run):
    from datetime import datetime, timezone

    with pytest.raises(AnalysisError, match="no conversations"):
        compare_split(run, datetime(2030, 1, 1, tzinfo=timezone.utc))


def test_classifier_extractive_shows_flag_rates(run, topic_of_cluster, run_dir):
    result = classifier(run, "flagged")  # base level
    assert result["concern_available"] is False and "--llm" in result["concern_reason"]
    assert result["correlation"] is None
    top = result["clusters"][0]
    assert topic_of_cluster[top["id"]][0] == "crypto" and top["flag_rate"] > 0.3
    assert all(r["flag_rate"] < 0.15 for r in result["clusters"] if topic_of_cluster[r["id"]][0] not in ("crypto",) and topic_of_cluster[r["id"]][1] > 0.9)
    with pytest.raises(AnalysisError, match="not in the run's aggregates"):
        classifier(run, "no_such_field")
    from convoscope.analyses.cli import analyze_app

    res = CliRunner().invoke(analyze_app, ["classifier", str(run_dir), "--flag-field", "flagged", "--level", "0"], env={"COLUMNS": "200"})
    assert res.exit_code == 0 and "Concern unavailable" in res.output


def test_only_published_clusters(run):
    """Every cluster id any analysis reports is a published cluster of the aggregates."""
    published = run.published_ids() | {c["id"] for c in run.aggregates["clusters"]}
    ids = set()
    for r in usage(run)["clusters"]:
        ids.add(r["id"])
    res = coordination(run)
    ids |= {r["id"] for r in res["concentration"]["clusters"]} | {r["id"] for r in res["templates"]["groups"]} | {r["id"] for r in res["bursts"]["bursts"]}
    ids |= {r["after_id"] for r in compare_split(run, NEW_TOPIC_FROM)["clusters"]}
    assert ids <= published
    view = conversation_view(run, "test")
    assert all(c is None or c in run.published_ids() for level in view.cluster for c in level)
