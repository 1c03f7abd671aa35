"""Evaluation commands: reconstruction metrics, the privacy planting evaluation, the auditor-accuracy
plumbing and the synthetic-data generator (the last two against the fake OpenAI server: they test our
plumbing, not a model)."""

from __future__ import annotations

import gzip
import json
import random
import re
from pathlib import Path

import pytest
from typer.testing import CliRunner

from fakes.llm_servers import FakeOpenAIServer, last_user_text, schema_of

from convoscope.config import Config
from convoscope.eval.cli import eval_app
from convoscope.eval.common import agreement, purity

CLINC = Path(__file__).resolve().parent / "data" / "clinc150_slice.jsonl.gz"  # the repository's slice: 120 requests per domain
DOMAINS = ("travel", "banking", "kitchen_and_dining", "auto_and_commute")
N_SLICE = 480  # all 4 x 120 requests of these domains in the slice
runner = CliRunner()


def test_purity_and_agreement_bounds():
    assert purity(["a", "a", "b", "b"], [1, 1, 2, 2]) == 1.0
    assert purity(["a", "b", "a", "b"], [1, 1, 1, 1]) == 0.5
    m = agreement(["a", "a", "b", "b"], [0, 0, 1, 1])
    assert m["nmi"] == 1.0 and m["ari"] == 1.0 and m["purity"] == 1.0


# ---------------------------------------------------------------------------------- reconstruction
@pytest.fixture(scope="module")
def clinc_slice(tmp_path_factory) -> Path:
    with gzip.open(CLINC, "rt", encoding="utf-8") as f:
        rows = [json.loads(line) for line in f]
    rows = [{**r, "language": "en"} for r in rows if r["parent_label"] in DOMAINS]  # CLINC150 is English; the full set has the field
    random.Random(0).shuffle(rows)
    path = tmp_path_factory.mktemp("clinc") / "slice.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows[:N_SLICE]))
    return path


def test_reconstruction_cli_json(clinc_slice, tmp_path):
    config = tmp_path / "c.toml"
    config.write_text("[cluster]\nconversations_per_cluster = 40\n")  # 12 base clusters under the top level (480 requests)
    result = runner.invoke(eval_app, ["reconstruction", str(clinc_slice), "--label-field", "label", "--parent-field", "parent_label",
                                      "--out", str(tmp_path / "run"), "--config", str(config), "--json", "--quiet"])
    assert result.exit_code == 0, result.output
    r = json.loads(result.stdout.strip().splitlines()[-1])
    assert r["categories"] == 4 and r["conversations"] == N_SLICE
    for key in ("accuracy", "nmi", "purity"):
        assert 0.0 <= r[key] <= 1.0
    assert -1.0 <= r["ari"] <= 1.0
    assert r["accuracy"] > 0.5  # chance is 0.25
    assert r["purity"] > 0.5 and r["nmi"] > 0.2
    assert set(r["per_language"]) == {"en"} and r["per_language"]["en"]["conversations"] == N_SLICE
    assert r["levels"][0]["name"] == "top" and r["levels"][-1]["name"] == "base"
    assert r["withheld"]["conversations"] >= 0
    b = r["baseline"]
    for key in ("top", "base"):
        for who in ("ours", "baseline"):
            assert 0.0 <= b[key][who]["nmi"] <= 1.0 and 0.0 <= b[key][who]["purity"] <= 1.0


@pytest.mark.slow  # a whole pipeline run (4-5 min on 2 busy cores)
def test_names_before_and_after_with_taxonomy_score(clinc_slice, tmp_path):
    config = tmp_path / "c.toml"
    config.write_text("[cluster]\nconversations_per_cluster = 40\n")
    args = ["names", str(clinc_slice), "--out", str(tmp_path / "run"), "--config", str(config), "--quiet"]
    result = runner.invoke(eval_app, args + ["--score-taxonomy", "default"])
    assert result.exit_code == 2 and "go together" in result.output
    result = runner.invoke(eval_app, args + ["--score-taxonomy", "default", "--label-field", "parent_label", "--json"])
    assert result.exit_code == 0, result.output
    r = json.loads(result.stdout.strip().splitlines()[-1])
    assert r["conversations"] == N_SLICE and r["base"]
    for row in r["base"]:
        assert row["before"]["description"].startswith("Requests whose most distinctive terms are: ")
        assert row["after"]["description"].startswith("Typical phrases: ") and ": " in row["after"]["name"]
    t = r["taxonomy_score"]
    assert t["entries"] >= 40 and t["conversations_with_gold"] == N_SLICE
    assert t["nearest"]["coverage"] == 1.0 and 0.0 <= t["thresholds"]["coverage"] <= 1.0
    assert 0.0 <= t["nearest"]["labels_vs_gold"]["nmi"] <= 1.0
    text = runner.invoke(eval_app, args)  # resumes the run; the table for docs/evaluation.md
    assert text.exit_code == 0 and "| share | before (terms) | after (phrases) |" in text.stdout


# ---------------------------------------------------------------------------------------- privacy
def test_privacy_extractive_zero_survival(tmp_path):
    from convoscope.eval.privacy import evaluate_privacy

    config = Config()
    config.cluster.conversations_per_cluster = 20  # small clusters: the gates, not cluster size, must stop the leaks
    r = evaluate_privacy(None, tmp_path, config, sample=220, seed=1, show_progress=False,
                         n_single=10, n_cross=3, cross_accounts=3, repeated=25, n_injection=4)
    assert r["items"] == 6 * (10 + 3 + 1 + 4)
    assert r["groups"]["repeated"]["accounts"] == 1 and r["groups"]["repeated"]["conversations"] == 25
    assert r["groups"]["cross_account"]["accounts"] == 9
    assert r["layers"]["facets"].startswith("n/a")
    for layer in ("names", "bundle", "run_files"):
        assert r["layers"][layer]["survived"] == 0, (layer, r["layers"][layer])
    assert r["layers"]["run_files"]["files_scanned"] >= 8
    assert r["planted_in_withheld_clusters"]["repeated"]["conversations"] == 25
    # the planted file itself does hold the items (the scan would find them if they leaked)
    planted = (tmp_path / "planted_input.jsonl").read_text()
    items = json.loads((tmp_path / "planted_items.json").read_text())["items"]
    assert all(it["value"] in planted for it in items)


def test_survivor_search_finds_planted_strings():
    from convoscope.eval.privacy import survivors

    items = [{"group": "single", "kind": "name", "value": "Ann Quorvath", "needles": ["Ann Quorvath", "Quorvath"]},
             {"group": "single", "kind": "phone", "value": "+1 555 123 4567", "needles": ["+1 555 123 4567", "15551234567"]}]
    assert len(survivors(items, "cluster about quorvath family")) == 1
    assert len(survivors(items, "nothing here")) == 0


# ---------------------------------------------------------------------------------------- auditor
PRIVATE_HINT = re.compile(r"@|\d{3}|\b(Street|Road|Apt|named|ID|born)\b|[A-Z][a-z]+ [A-Z][a-z]+'s")


def keyword_auditor(body: dict) -> str:
    """A keyword rule standing in for the auditor model: tests the plumbing, not a model."""
    text = last_user_text(body)
    cluster = text.split("<cluster>", 1)[1].split("</cluster>", 1)[0]
    score = 1 if PRIVATE_HINT.search(cluster) else 5
    return json.dumps({"justification": "keyword rule", "score": score})


def test_auditor_accuracy_plumbing(tmp_path):
    from convoscope.eval.privacy import load_auditor_labels

    labels = load_auditor_labels()
    assert len(labels) >= 40 and all(x["rationale"] for x in labels)
    assert sum(x["private"] for x in labels) >= 15 and sum(not x["private"] for x in labels) >= 15
    expected = sum((PRIVATE_HINT.search(f"{x['name']}: {x['description']}") is None) == (not x["private"]) for x in labels) / len(labels)
    with FakeOpenAIServer(responder=keyword_auditor) as server:
        result = runner.invoke(eval_app, ["privacy", "--auditor-only", "--llm", f"openai:fake@{server.url}", "--out", str(tmp_path), "--json", "--quiet"])
        assert result.exit_code == 0, result.output
        assert server.request_count == len(labels)
    r = json.loads(result.stdout.strip().splitlines()[-1])
    assert r["labelled"] == len(labels)
    assert r["accuracy"] == pytest.approx(expected, abs=1e-3)
    assert r["failed_requests"] == 0


def test_auditor_only_needs_llm(tmp_path):
    result = runner.invoke(eval_app, ["privacy", "--auditor-only", "--out", str(tmp_path)])
    assert result.exit_code == 2


# ------------------------------------------------------------------------------------- synthesizer
def synth_responder(body: dict) -> str:
    schema = schema_of(body)
    text = last_user_text(body)
    props = schema["properties"]
    if "subcategories" in props:
        cat = re.search(r'category "([^"]+)"', text).group(1)
        return json.dumps({"subcategories": [f"{cat} basics", f"{cat} advanced", f"{cat} troubleshooting"]})
    if "prompt" in props:
        sub = re.search(r'about "([^"]+)"', text).group(1)
        lang = re.search(r"Language: ([^.]+)\.", text).group(1)
        return json.dumps({"prompt": f"[{lang}] Please help me with {sub}."})
    prompt = re.search(r"<message>(.*)</message>", text, re.S).group(1)
    return json.dumps({"messages": [{"role": "user", "content": prompt}, {"role": "assistant", "content": "Sure, here is how."},
                                    {"role": "user", "content": "Thanks!"}]})


def test_synthesize_with_fake_server(tmp_path):
    from convoscope.ingest import IngestOptions, read_conversations

    out = tmp_path / "synthetic.jsonl"
    with FakeOpenAIServer(responder=synth_responder) as server:
        result = runner.invoke(eval_app, ["synthesize", "--categories", "Cooking, Travel,Taxes", "--llm", f"openai:fake@{server.url}",
                                          "--out", str(out), "--per-category", "5", "--subcategories", "3", "--languages", "English,French", "--quiet"])
        assert result.exit_code == 0, result.output
        assert server.request_count == 3 + 15 + 15
    records = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(records) == 15
    assert {r["metadata"]["category"] for r in records} == {"Cooking", "Travel", "Taxes"}
    assert {r["metadata"]["language"] for r in records} == {"English", "French"}
    for r in records:
        assert r["metadata"]["subcategory"].startswith(r["metadata"]["category"])
        assert r["messages"][0]["role"] == "user" and r["metadata"]["language"] in r["messages"][0]["content"]
        assert r["metadata"]["tone"] and r["metadata"]["length"] in ("short", "medium", "long")
    # the pipeline's reader accepts it, with the labels in metadata
    convs = list(read_conversations(out, IngestOptions()))
    assert len(convs) == 15 and convs[0].metadata["category"] == records[0]["metadata"]["category"]


def test_llm_category_assignment_plumbing(tmp_path):
    """LLM mode: one request per base cluster with the gold names as an enum; answers outside the list count as failures."""
    import numpy as np
    import pyarrow as pa

    from convoscope.eval.reconstruction import _assign_llm
    from convoscope.llm import LLMSettings
    from convoscope.store import RunStore

    store = RunStore(tmp_path / "run", create=True)
    store.write_table("base_clusters", pa.table({"id": ["b0", "b1", "b2"], "name": ["Book flights", "Check card balance", "Mystery"],
                                                 "description": ["travel plans", "bank questions", "unclear"]}))

    def responder(body: dict) -> str:
        enum = schema_of(body)["properties"]["category"]["enum"]
        assert enum == ["banking", "kitchen and dining", "travel"]
        text = last_user_text(body)
        pick = "travel" if "flights" in text else ("banking" if "card" in text else "not a category")
        return json.dumps({"scratchpad": "rule", "category": pick})

    with FakeOpenAIServer(responder=responder) as server:
        config = Config()
        config.llm = LLMSettings(facets=f"openai:fake@{server.url}", cache=False, schema_retries=0)
        predicted, failed = _assign_llm(config, store, np.array([0, 0, 1, 2]), ["banking", "kitchen_and_dining", "travel"], False)
    assert predicted.tolist()[:3] == [2, 2, 0] and failed == 1


def test_reconstruction_in_llm_mode_end_to_end(tmp_path):
    """`eval reconstruction --llm` against the fake server: every LLM stage plus the LLM category
    assignment run; the keyword responder makes the expected answer known (plumbing, not a model)."""
    from fakes.clio_responder import make_responder
    from fakes.corpus import make_records, write_jsonl

    data = write_jsonl(tmp_path / "c.jsonl", make_records(per_topic=40, accounts=30))
    cfg = tmp_path / "c.toml"
    cfg.write_text("[cluster]\nconversations_per_cluster = 10\n[privacy]\nmin_conversations = 5\nmin_accounts = 3\n[llm]\ncache = false\n")
    with FakeOpenAIServer(responder=make_responder()) as server:
        result = CliRunner().invoke(eval_app, ["reconstruction", str(data), "--label-field", "topic", "--llm", f"openai:fake@{server.url}",
                                               "--out", str(tmp_path / "run"), "--config", str(cfg), "--json", "--quiet"])
        assert result.exit_code == 0, result.output
        bodies = json.dumps(server.requests)
    report = json.loads(result.stdout)
    assert report["accuracy"] > 0.9  # the keyword responder names and assigns topics correctly
    assert "<conversation>" in bodies and "category" in bodies


def test_privacy_eval_cluster_size_flag_then_config_then_default(tmp_path):
    from convoscope.eval.cli import PRIVACY_EVAL_PER_CLUSTER, privacy_eval_config

    assert privacy_eval_config(None, None, None).cluster.conversations_per_cluster == PRIVACY_EVAL_PER_CLUSTER
    cfg_file = tmp_path / "c.toml"
    cfg_file.write_text("[cluster]\nconversations_per_cluster = 40\n")
    assert privacy_eval_config(cfg_file, None, None).cluster.conversations_per_cluster == 40
    assert privacy_eval_config(cfg_file, None, 12).cluster.conversations_per_cluster == 12
