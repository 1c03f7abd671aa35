"""Analyses with hand-written aggregates (LLM-mode runs without an LLM) and their statistics, with known answers."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from typer.testing import CliRunner

from convoscope.analyses.classifier import classifier
from convoscope.analyses.common import load_run, pearson, two_proportion_z, wilson
from convoscope.analyses.compare import compare_runs, match_clusters
from convoscope.analyses.concerning import concerning
from convoscope.analyses.coordination import bursts, leader_groups
from convoscope.analyses.languages import languages
from convoscope.store import RunStore


def _cluster(cid, name, size, *, level=0, parent=None, concern=None, flags=None, language=None, timeline=None, description="d"):
    facets = {}
    if concern is not None:
        hist = {str(k): v for k, v in concern.items() if v}
        n = sum(hist.values())
        facets["concerning"] = {"mean": round(sum(int(k) * v for k, v in hist.items()) / n, 3), "n": n, "hist": hist}
    if flags is not None:
        facets["meta.flagged"] = flags
    if language is not None:
        facets["language"] = language
    return {"id": cid, "level": level, "parent": parent, "kind": "cluster", "name": name, "description": description, "size": size,
            "accounts": max(5, size // 3), "share": 0.0, "children": [], "x": 0.0, "y": 0.0, "audit": None, "facets": facets, "timeline": timeline}


def _write_run(root, clusters, *, mode="llm", conversations=None, time_unit=None, unavailable=None):
    store = RunStore(root, create=True)
    store.update_manifest(mode=mode)
    facets = [{"name": "language", "kind": "category"}, {"name": "meta.flagged", "kind": "category"}]
    if mode == "llm":
        facets.append({"name": "concerning", "kind": "number", "min": 1, "max": 5})
    store.write_json("aggregates", {
        "run": {"mode": mode, "facet": "request", "conversations": conversations or sum(c["size"] for c in clusters if c["level"] == 0),
                "accounts": 100, "levels": max(c["level"] for c in clusters) + 1, "min_accounts": 5, "min_conversations": 15,
                "time_range": None, "time_unit": time_unit},
        "facets": facets,
        "facets_unavailable": unavailable if unavailable is not None else ({} if mode == "llm" else {"concerning": "needs an LLM (run with --llm)"}),
        "clusters": clusters, "withheld": {"clusters": 0, "conversations": 0}})
    return root


@pytest.fixture
def llm_run(tmp_path):
    clusters = [
        # concern high, flagged often (agreement)
        _cluster("a", "Weapons synthesis requests", 100, concern={1: 10, 2: 10, 3: 20, 4: 30, 5: 30}, flags={"True": 70, "False": 30}),
        # concern high, rarely flagged: a likely miss
        _cluster("b", "Coordinated influence posts", 80, concern={1: 5, 2: 10, 3: 25, 4: 25, 5: 15}, flags={"False": 78, "True": 2}),
        # benign, flagged often: a likely false alarm
        _cluster("c", "Chemistry homework help", 120, concern={1: 110, 2: 10}, flags={"True": 72, "False": 48}),
        # benign, rarely flagged
        _cluster("d", "Cooking recipes", 200, concern={1: 195, 2: 5}, flags={"False": 196, "true": 2, "other": 2}),
        _cluster("e", "Python debugging", 150, concern={1: 140, 2: 10}, flags={"False": 150}),
    ]
    return load_run(_write_run(tmp_path / "llm", clusters))


def test_wilson_known_values():
    lo, hi = wilson(50, 100)
    assert lo == pytest.approx(0.4038, abs=1e-3) and hi == pytest.approx(0.5962, abs=1e-3)
    lo, hi = wilson(0, 20)
    assert lo == 0.0 and hi == pytest.approx(0.1611, abs=1e-3)
    assert wilson(0, 0) == (0.0, 0.0)


def test_two_proportion_z_known_value():
    z, p = two_proportion_z(30, 100, 50, 100)  # 0.3 vs 0.5, pooled 0.4
    assert z == pytest.approx(0.2 / math.sqrt(0.24 * 0.02), rel=1e-9)
    assert p == pytest.approx(0.00384, abs=1e-4)
    assert two_proportion_z(0, 0, 1, 10) == (0.0, 1.0)


def test_pearson():
    assert pearson([1, 2, 3, 4], [2, 4, 6, 8]) == pytest.approx(1.0)
    assert pearson([1, 2], [1, 2]) is None
    assert pearson([1, 1, 1], [1, 2, 3]) is None


def test_concerning_ranks(llm_run):
    result = concerning(llm_run, level=0)
    assert result["available"]
    assert [r["id"] for r in result["by_mean"]][:2] == ["a", "b"]
    a = result["by_high_share"][0]
    assert a["id"] == "a" and a["high"] == 60 and a["high_share"] == pytest.approx(0.6)
    lo, hi = a["high_share_ci95"]
    assert lo < 0.6 < hi
    assert result["overall"]["n"] == 650 and result["overall"]["high"] == 100
    assert [r["id"] for r in concerning(llm_run, level=0, top=1)["by_mean"]] == ["a"]


def test_concerning_cli_json(llm_run):
    from convoscope.analyses.cli import analyze_app

    res = CliRunner().invoke(analyze_app, ["concerning", str(llm_run.store.root), "--json"])
    assert res.exit_code == 0, res.output
    assert json.loads(res.output)["by_mean"][0]["name"] == "Weapons synthesis requests"
    res = CliRunner().invoke(analyze_app, ["concerning", str(llm_run.store.root)], env={"COLUMNS": "200"})
    assert res.exit_code == 0 and "Weapons synthesis requests" in res.output


def test_classifier_correlation_misses_and_false_alarms(llm_run):
    result = classifier(llm_run, "flagged", level=0)
    assert result["concern_available"]
    rates = {r["id"]: r["flag_rate"] for r in result["clusters"]}
    assert rates["a"] == pytest.approx(0.7) and rates["b"] == pytest.approx(2 / 80)
    assert rates["d"] == pytest.approx(2 / 198)  # "other" is left out of the denominator; "true" in any case counts
    means = {r["id"]: r["concern_mean"] for r in result["clusters"]}
    expected = float(np.corrcoef([means[k] for k in "abcde"], [rates[k] for k in "abcde"])[0, 1])
    assert result["correlation"]["pearson_r"] == pytest.approx(expected)
    assert [r["id"] for r in result["likely_misses"]] == ["b"]
    assert [r["id"] for r in result["likely_false_alarms"]] == ["c"]
    from convoscope.analyses.cli import analyze_app

    res = CliRunner().invoke(analyze_app, ["classifier", str(llm_run.store.root), "--flag-field", "flagged"], env={"COLUMNS": "200"})
    assert res.exit_code == 0 and "likely miss" in res.output and "likely false alarm" in res.output and "Pearson r" in res.output


def test_classifier_numeric_field(tmp_path):
    c = _cluster("a", "x", 40)
    c["facets"]["meta.flagged"] = {"mean": 0.25, "n": 40, "hist": {"0": 30, "0.8": 10}}
    run = load_run(_write_run(tmp_path / "n", [c], mode="extractive"))
    run.aggregates["facets"][1]["kind"] = "number"
    result = classifier(run, "flagged")
    assert result["clusters"][0]["flag_rate"] == pytest.approx(0.25)
    assert result["concern_available"] is False


def test_languages_support_rule_and_other_bound(tmp_path):
    clusters = [
        _cluster("t", "Travel", 100, language={"Spanish": 60, "English": 40}),
        _cluster("c", "Cooking", 200, language={"English": 194, "other": 6}),  # Spanish maybe hidden in "other" (<= 6)
        _cluster("p", "Python", 100, language={"English": 100}),
        _cluster("s", "Small", 8, language={"Spanish": 8}),  # 100% Spanish but only 8: below min_support 10
    ]
    run = load_run(_write_run(tmp_path / "l", clusters, mode="extractive"))
    result = languages(run, level=0, min_support=10, min_language=20)
    spanish = next(x for x in result["languages"] if x["language"] == "Spanish")
    overall = 68 / 408
    assert spanish["overall_share"] == pytest.approx(overall)
    assert [e["id"] for e in spanish["over_represented"]] == ["t"]
    assert spanish["over_represented"][0]["ratio"] == pytest.approx(0.6 / overall)
    under = {e["id"]: e for e in spanish["under_represented"]}
    assert set(under) == {"c", "p"}
    assert under["c"]["count_upper_bound"] == 6 and under["c"]["ratio"] == pytest.approx((6 / 200) / overall)
    assert under["p"]["ratio"] == 0.0
    assert under["c"]["count_is_upper_bound"] and not under["p"]["count_is_upper_bound"]  # nothing merged in "Python": exactly 0
    assert [e["id"] for e in spanish["under_represented"]] == ["p", "c"]
    from io import StringIO

    from rich.console import Console

    from convoscope.analyses.languages import print_languages

    buffer = StringIO()
    print_languages(result, Console(file=buffer, width=200, no_color=True))
    printed = buffer.getvalue()
    assert "≤6 / 200" in printed and "≤0 /" not in printed and " 0 / 100" in printed


def test_leader_groups_known():
    rng = np.random.default_rng(0)
    base = rng.normal(size=(3, 32))
    rows = []
    for k, n in ((0, 20), (1, 12), (2, 3)):
        rows.append(base[k] + 0.02 * rng.normal(size=(n, 32)))
    noise = rng.normal(size=(15, 32))
    v = np.vstack(rows + [noise])
    v /= np.linalg.norm(v, axis=1, keepdims=True)
    groups = leader_groups(v, 0.95, 10)
    assert sorted(len(g) for g in groups) == [12, 20]
    assert set(groups[0].tolist()) == set(range(20))


def test_bursts_known(tmp_path):
    weeks = [f"2024-01-{d:02d}" for d in (1, 8, 15, 22, 29)]
    steady = _cluster("s", "Steady", 500, timeline=[[w, 100] for w in weeks])
    bursty = _cluster("b", "Bursty", 80, timeline=[[w, 10] for w in weeks[:4]] + [[weeks[4], 40]])
    run = load_run(_write_run(tmp_path / "b", [steady, bursty], mode="extractive", time_unit="week"))
    result = bursts(run, burst_z=4, min_burst=10)
    assert [(b["id"], b["bucket"]) for b in result["bursts"]] == [("b", "2024-01-29")]
    b = result["bursts"][0]
    lam = 40 / 440 * 140  # share outside the week x the week's volume
    assert b["baseline"] == pytest.approx(lam, abs=0.01)
    assert b["z"] == pytest.approx((40 - lam) / math.sqrt(lam))
    none = bursts(load_run(_write_run(tmp_path / "n", [steady], mode="extractive")))
    assert none["available"] is False


class _FakeEmbedder:
    """Embeds by the set of words, so synonyms-by-construction match."""

    def encode(self, texts):
        vocab = {}
        rows = []
        for t in texts:
            words = set(t.lower().replace(":", " ").split())
            rows.append(words)
            for w in words:
                vocab.setdefault(w, len(vocab))
        out = np.zeros((len(texts), 512), dtype=np.float32)
        for i, words in enumerate(rows):
            for w in words:
                out[i, hash(w) % 512] = 1.0
        return out / np.linalg.norm(out, axis=1, keepdims=True)


def test_compare_two_runs(tmp_path):
    before = [_cluster("b1", "Cooking recipes", 300), _cluster("b2", "Tax questions", 300),
              _cluster("b3", "Python errors in pandas dataframes", 200, description="fixing pandas dataframe errors"),
              _cluster("b4", "Poetry writing", 200)]
    after = [_cluster("a1", "cooking  Recipes", 300), _cluster("a2", "Tax questions", 100),
             _cluster("a3", "Python errors in pandas dataframe", 200, description="fixing pandas dataframe errors"),
             _cluster("a5", "Crypto mining", 200), _cluster("a4", "Poetry writing", 200)]
    r1 = load_run(_write_run(tmp_path / "r1", before))
    r2 = load_run(_write_run(tmp_path / "r2", after))
    pairs = match_clusters(r1.clusters(0), r2.clusters(0), 0.8, _FakeEmbedder())
    how = {(b["id"] if b else None, a["id"] if a else None): m for b, a, m, _ in pairs}
    assert how[("b1", "a1")] == "name" and how[("b3", "a3")] == "embedding" and how[(None, "a5")] is None
    result = compare_runs(r1, r2, level=0, embedder=_FakeEmbedder())
    rows = {r["after_id"] or r["before_id"]: r for r in result["clusters"]}
    assert rows["a5"]["status"] == "appeared" and rows["a5"]["beyond_noise"] and rows["a5"]["share_diff"] == pytest.approx(0.2)
    assert rows["a2"]["status"] == "shrank" and rows["a2"]["share_diff"] == pytest.approx(0.1 - 0.3)
    assert rows["a4"]["status"] == "stable" and not rows["a4"]["beyond_noise"]
    z, _ = two_proportion_z(300, 1000, 100, 1000)
    assert rows["a2"]["z"] == pytest.approx(z)
    assert result["clusters"][0]["after_id"] in ("a5", "a2")  # sorted by |z|


def test_coordination_refuses_a_differential_privacy_run(tmp_path):
    """coordination counts conversations anew (templates, bursts): outside a DP run's release, so refused."""
    from convoscope.analyses.coordination import coordination
    from convoscope.errors import ConvoscopeError

    root = _write_run(tmp_path / "dp", [_cluster("a", "Cooking recipes", 200)], mode="extractive")
    store = RunStore(root)
    aggregates = store.read_json("aggregates")
    store.write_json("aggregates", {**aggregates, "privacy_guarantee": {"mode": "dp", "epsilon": 1.0, "delta": 1e-6, "unit": "account"}})
    run = load_run(root)
    assert run.differentially_private
    with pytest.raises(ConvoscopeError, match="differential-privacy release"):
        coordination(run)


def test_wilson_survives_noisy_counts():
    """DP releases add noise: a cluster's noisy size can exceed the run's noisy total (no math domain error)."""
    from convoscope.analyses.common import wilson

    assert wilson(105, 100) == pytest.approx(wilson(100, 100))
    assert wilson(-3, 100) == pytest.approx(wilson(0, 100))
