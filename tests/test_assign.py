"""`convoscope assign`: new conversations placed into a finished run's clusters, end to end.

RUN is built on three topics (cooking, tax, python); the new data has cooking and tax again, a topic RUN
never saw (crypto mining), and python questions from only two accounts, one of them carrying a planted
word. Known topics must land in RUN's clusters of the same topic, the new topic in "Unassigned (new
topic)", and the privacy gates must hold on the new data.
"""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
from collections import Counter
from datetime import timedelta

import pyarrow.parquet as pq
import pytest

from convoscope.assign import UNASSIGNED_ID, UNASSIGNED_NAME, assign, assign_config
from convoscope.errors import ConfigError, ConvoscopeError
from convoscope.pipeline import run_pipeline
from convoscope.report import report_json
from convoscope.store import RunStore
from test_analyses_data import COINS, COOKING, CRYPTO, DISHES, ERRORS, PYTHON, START, TAX, TAX_ITEMS, small_config, write_input

PLANTED = "Zorblaxian"  # in the two-account python group only: must never be published
POOL = [f"acct-{i:03d}" for i in range(60)]
SMALL_GROUP = ["acct-solo-1", "acct-solo-2"]


def _text(r: random.Random, topic: str) -> str:
    if topic == "cooking":
        return r.choice(COOKING).format(d=r.choice(DISHES), n=r.randint(2, 12))
    if topic == "tax":
        return r.choice(TAX).format(t=r.choice(TAX_ITEMS), n=r.randint(20, 200))
    if topic == "python":
        return r.choice(PYTHON).format(e=r.choice(ERRORS))
    return r.choice(CRYPTO).format(k=r.choice(COINS), n=r.randint(2, 12))


def records(spec: list[tuple[str, int, list[str]]], seed: int, prefix: str, planted_in: str | None = None) -> list[dict]:
    r = random.Random(seed)
    out = []
    for topic, n, accounts in spec:
        for _ in range(n):
            text = _text(r, topic) + (f" My project is called {PLANTED}." if topic == planted_in else "")
            out.append({"id": f"{prefix}{len(out):04d}", "user": r.choice(accounts),
                        "created_at": (START + timedelta(hours=r.randrange(24 * 28))).isoformat(),
                        "messages": [{"role": "user", "content": text}, {"role": "assistant", "content": "Here is an answer."}],
                        "metadata": {"topic": topic}})
    r.shuffle(out)
    return out


def cli(*args):
    return subprocess.run([sys.executable, "-m", "convoscope", *map(str, args)], capture_output=True, text=True, timeout=600, env=dict(os.environ))


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("assign")
    run_input = write_input(root / "run.jsonl", records([("cooking", 100, POOL), ("tax", 100, POOL), ("python", 100, POOL)], 0, "r"))
    new_records = records([("cooking", 50, POOL), ("tax", 50, POOL), ("crypto", 50, POOL), ("python", 12, SMALL_GROUP)], 1, "n", planted_in="python")
    new_input = write_input(root / "new.jsonl", new_records)
    run_pipeline(run_input, root / "run", small_config(), show_progress=False)
    result = cli("assign", root / "run", new_input, "--out", root / "new", "--quiet")
    assert result.returncode == 0, result.stderr
    assert "Unassigned (new topic)" in result.stderr and "convoscope compare" in result.stderr
    topics = {rec["id"]: rec["metadata"]["topic"] for rec in new_records}
    run_topics = {rec["id"]: rec["metadata"]["topic"] for rec in map(json.loads, run_input.read_text().splitlines())}
    return {"root": root, "run": root / "run", "new": root / "new", "new_input": new_input, "topics": topics, "run_topics": run_topics}


def _base_column(store: RunStore) -> str:
    return f"level_{store.manifest['stages']['hierarchy']['levels'] - 1}"


def test_known_topics_land_in_their_clusters_and_the_new_topic_in_the_bucket(runs):
    run, new = RunStore(runs["run"]), RunStore(runs["new"])
    # each RUN base cluster's majority topic
    run_assign = run.read_table("assignments").to_pylist()
    by_cluster: dict[str, Counter] = {}
    for row in run_assign:
        by_cluster.setdefault(row[_base_column(run)], Counter())[runs["run_topics"][row["conv_id"]]] += 1
    topic_of = {cid: c.most_common(1)[0][0] for cid, c in by_cluster.items()}
    placed: dict[str, Counter] = {}
    for row in new.read_table("assignments").to_pylist():
        base = row[_base_column(new)]
        placed.setdefault(runs["topics"][row["conv_id"]], Counter())["new" if base == UNASSIGNED_ID else topic_of[base]] += 1
    for topic in ("cooking", "tax"):
        total = sum(placed[topic].values())
        assert placed[topic][topic] >= 0.8 * total, placed
        assert placed[topic]["new"] + placed[topic][topic] == total, placed  # never into another topic's cluster
    assert placed["crypto"]["new"] == sum(placed["crypto"].values()), placed
    assert placed["python"]["python"] + placed["python"]["new"] == sum(placed["python"].values()), placed
    # the bucket is a cluster of its own at every level, named, counted
    hierarchy = new.read_table("hierarchy").to_pylist()
    bucket = [h for h in hierarchy if h["name_source"] == "none"]
    assert len(bucket) == new.manifest["stages"]["hierarchy"]["levels"]
    assert all(h["name"] == UNASSIGNED_NAME for h in bucket)
    assert {h["id"] for h in bucket if h["level"] == max(x["level"] for x in hierarchy)} == {UNASSIGNED_ID}


def test_manifest_config_threshold_and_tables(runs):
    run, new = RunStore(runs["run"]), RunStore(runs["new"])
    m = new.manifest
    assert m["assigned_from"]["run"] == str(runs["run"].resolve())
    threshold = m["assigned_from"]["threshold"]
    assert 0 < threshold < 1 and "percentile" in m["assigned_from"]["threshold_source"]
    # the same model and settings; new data is not centred on its own languages (the run's offsets move it)
    assert m["config"]["embedding"] == {**run.manifest["config"]["embedding"], "centre_languages_min": 0}
    assert m["config"]["privacy"] == run.manifest["config"]["privacy"]
    assert m["stages"]["embed"]["model"] == run.manifest["stages"]["embed"]["model"]
    for stage in ("ingest", "facets", "embed", "cluster", "name", "hierarchy", "privacy", "map", "aggregates"):
        assert m["stages"][stage]["fingerprint"], stage
    base = new.read_table("base_assignments").to_pylist()
    assert all((b["cluster"] == -1) == (b["similarity"] < threshold - 1e-6) for b in base)
    n = new.read_table("facets").num_rows
    assert new.read_table("map").num_rows == n == new.read_table("assignments").num_rows == len(new.read_array("embeddings"))
    # only ingest settings may be overridden; the run's own embedding model and privacy settings stay
    with pytest.raises(ConfigError):
        assign_config(run, {"privacy.min_accounts": 1})
    assert assign_config(run, {"ingest.skip_invalid": True}).ingest.skip_invalid is True


def test_privacy_gates_hold_on_the_new_data(runs):
    new = RunStore(runs["new"])
    rep = report_json(new)
    text = json.dumps(rep) + (runs["new"] / "aggregates.json").read_text()
    assert PLANTED not in text
    # the two-account python group: in RUN's python clusters, but never published from two accounts
    python_ids = {row[_base_column(new)] for row in new.read_table("assignments").to_pylist() if runs["topics"][row["conv_id"]] == "python"}
    clusters = {c["id"]: c for c in new.read_table("clusters").to_pylist()}
    assert python_ids and all(not clusters[cid]["published"] for cid in python_ids)
    assert not python_ids & {c["id"] for c in rep["clusters"]}
    # published: at least min_accounts accounts on the NEW data; the bucket published with counts only
    published = [c for c in rep["clusters"] if c["kind"] == "cluster"]
    assert all(c["accounts"] >= 3 for c in published)
    assert any(c["name"] == UNASSIGNED_NAME for c in published)
    # names come from RUN's release only: no name RUN withheld is in NEW_RUN's tables or release
    run_clusters = RunStore(runs["run"]).read_table("clusters").to_pylist()
    withheld = {c["name"] for c in run_clusters if not c["published"]} - {c["name"] for c in run_clusters if c["published"]}
    released = {c["name"] for c in run_clusters if c["published"]} | {UNASSIGNED_NAME, "Name withheld", "Other (withheld)"}
    assert {c["name"] for c in rep["clusters"]} <= released
    assert not withheld & {h["name"] for h in new.read_table("hierarchy").to_pylist()}
    # no raw text in NEW_RUN's tables
    for path in runs["new"].glob("*.parquet"):
        assert PLANTED not in json.dumps(pq.read_table(path).to_pylist(), default=str), path


def test_compare_report_explore_and_analyze_work_on_the_new_run(runs, tmp_path):
    result = cli("compare", runs["run"], runs["new"], "--json")
    assert result.returncode == 0, result.stderr
    rows = json.loads(result.stdout)["clusters"]
    bucket = [r for r in rows if r["name"] == UNASSIGNED_NAME]
    assert bucket and bucket[0]["status"] == "appeared" and bucket[0]["before"] == 0
    assert any(r["match"] == "id" and r["before"] > 0 and r["after"] > 0 for r in rows)  # one lineage: matched by cluster id
    # RUN's python clusters are withheld in the new run (two accounts): "not published", not "disappeared", and untested
    python_ids = {c["id"] for c in RunStore(runs["run"]).read_json("aggregates")["clusters"]
                  if c["kind"] == "cluster" and c["id"] not in {x["id"] for x in RunStore(runs["new"]).read_json("aggregates")["clusters"]}}
    unpublished = [r for r in rows if r["before_id"] in python_ids]
    assert unpublished and all(r["status"] == "not published" and r["after"] is None and r["p"] is None and not r["beyond_noise"]
                               for r in unpublished)
    assert not any(r["status"] == "disappeared" for r in rows)
    tested = [r for r in rows if r["p"] is not None]
    assert all(r["p_bonferroni"] == pytest.approx(min(1.0, r["p"] * len(tested))) for r in tested)
    # the other way round: withheld in the OLD run
    reverse = json.loads(cli("compare", runs["new"], runs["run"], "--json").stdout)["clusters"]
    assert {r["after_id"] for r in reverse if r["status"] == "not published" and r["before"] is None} == {r["before_id"] for r in unpublished}
    assert not any(r["status"] == "appeared" for r in reverse)
    assert cli("report", runs["new"]).returncode == 0
    explorer = cli("explore", runs["new"], "--output", tmp_path / "e.html")
    assert explorer.returncode == 0, explorer.stderr
    assert PLANTED not in (tmp_path / "e.html").read_text()
    usage = cli("analyze", "usage", runs["new"], "--json")
    assert usage.returncode == 0, usage.stderr


def test_rerun_resumes_and_threshold_overrides(runs, tmp_path):
    new = runs["new"]
    before = (new / "hierarchy.parquet").stat().st_mtime_ns, (new / "aggregates.json").stat().st_mtime_ns
    store = assign(runs["run"], runs["new_input"], new, show_progress=False)
    assert ((new / "hierarchy.parquet").stat().st_mtime_ns, (new / "aggregates.json").stat().st_mtime_ns) == before
    assert store.manifest["assigned_from"]["threshold_source"].endswith("centroid")
    # a threshold of -1 places everything; 1.0 (above any similarity but exact copies) almost nothing
    everything = assign(runs["run"], runs["new_input"], tmp_path / "all", threshold=-1.0, show_progress=False)
    assert everything.stage_record("cluster")["unassigned"] == 0
    assert everything.manifest["assigned_from"]["threshold_source"] == "given"
    assert UNASSIGNED_ID not in {h["id"] for h in everything.read_table("hierarchy").to_pylist()}


def test_rerun_rewrites_an_explorer_page_of_the_previous_release(runs, tmp_path):
    """`explore NEW_RUN`, then assign again into it with another threshold: the page shows the new release."""
    from convoscope.explorer import write_explorer

    out = tmp_path / "week"
    assign(runs["run"], runs["new_input"], out, threshold=-1.0, show_progress=False)
    page = write_explorer(out)
    old = page.read_text(encoding="utf-8")
    assert UNASSIGNED_NAME not in old
    assign(runs["run"], runs["new_input"], out, threshold=0.99, show_progress=False)
    assert UNASSIGNED_NAME in page.read_text(encoding="utf-8")


def test_a_run_into_an_assigned_directory_is_refused(runs, tmp_path):
    """`convoscope run` into NEW_RUN overwrote the placed data and left the manifest saying it was assigned."""
    import shutil

    copy = tmp_path / "new"
    shutil.copytree(runs["new"], copy)
    result = cli("run", runs["new_input"], "--out", copy, "--quiet")
    assert result.returncode == 1 and "convoscope assign" in result.stderr and "Traceback" not in result.stderr
    assert RunStore(copy).read_json("aggregates") == RunStore(runs["new"]).read_json("aggregates")


def test_clear_errors(runs, tmp_path):
    same = cli("assign", runs["run"], runs["new_input"], "--out", runs["run"])
    assert same.returncode == 1 and "NEW_RUN" in same.stderr and "Traceback" not in same.stderr
    unfinished = tmp_path / "unfinished"
    unfinished.mkdir()
    (unfinished / "manifest.json").write_text(json.dumps({"stages": {}}))
    for bad in (unfinished, tmp_path):
        with pytest.raises(ConvoscopeError, match="finished"):
            assign(bad, runs["new_input"], tmp_path / "out", show_progress=False)
    with pytest.raises(ConvoscopeError, match="NEW_RUN"):
        assign(runs["run"], runs["new_input"], runs["root"] / "run", show_progress=False)  # NEW_RUN is RUN
    normal = RunStore(tmp_path / "normal", create=True)
    normal.update_manifest(config={})
    with pytest.raises(ConvoscopeError, match="convoscope run"):
        assign(runs["run"], runs["new_input"], normal.root, show_progress=False)  # would overwrite a normal run


def test_llm_mode_inherits_names_without_naming_or_auditing_again(tmp_path):
    from convoscope.config import load_config
    from fakes.clio_responder import make_responder
    from fakes.corpus import make_records, write_jsonl
    from fakes.llm_servers import FakeOpenAIServer

    run_data = write_jsonl(tmp_path / "run.jsonl", [r for r in make_records(per_topic=40, accounts=30) if r["metadata"]["topic"] != "travel"])
    new_records = [r for r in make_records(per_topic=30, accounts=30, seed=1) if r["metadata"]["topic"] != "python"]
    new_data = write_jsonl(tmp_path / "new.jsonl", new_records)
    with FakeOpenAIServer(responder=make_responder()) as server:
        cfg = load_config(None, {"cluster.conversations_per_cluster": 10, "privacy.min_conversations": 5, "privacy.min_accounts": 3,
                                 "llm.facets": f"openai:fake@{server.url}", "llm.cache_dir": str(tmp_path / "cache")})
        run = run_pipeline(run_data, tmp_path / "run", cfg, show_progress=False)
        seen = len(server.requests)
        new = assign(tmp_path / "run", new_data, tmp_path / "new", show_progress=False)
        tasks = Counter("facets" if "<conversation>" in b["messages"][-1]["content"] else "other" for b in server.requests[seen:])
    assert new.manifest["mode"] == "llm"
    assert tasks["other"] == 0 and tasks["facets"] > 0  # no naming, hierarchy, rewrite or audit call: only the new facets
    topics = {r["id"]: r["metadata"]["topic"] for r in new_records}
    base = _base_column(new)
    rows = new.read_table("assignments").to_pylist()  # exact duplicates were removed at ingest
    bucket = Counter(topics[row["conv_id"]] for row in rows if row[base] == UNASSIGNED_ID)
    assert bucket["travel"] == sum(1 for row in rows if topics[row["conv_id"]] == "travel") > 0
    known = Counter(topics[row["conv_id"]] for row in rows)
    assert bucket["cooking"] + bucket["taxes"] <= 0.2 * (known["cooking"] + known["taxes"]), (bucket, known)
    released = {c["id"]: c["name"] for c in run.read_table("clusters").to_pylist() if c["published"] and c["kind"] == "cluster"}
    clusters = new.read_table("clusters").to_pylist()
    shown = [c for c in clusters if c["published"] and c["kind"] == "cluster" and not c["id"].startswith(UNASSIGNED_ID)]
    assert shown and all(c["name"] == released[c["id"]] for c in shown)
    assert all(c["audit_score"] is None for c in clusters)  # inherited names passed RUN's audit; nothing audited again
    assert any(c["name"] == UNASSIGNED_NAME and c["published"] for c in clusters)


def test_every_assign_option_has_help():
    import typer

    from convoscope.cli import app

    command = typer.main.get_command(app).commands["assign"]
    assert command.help and "compare" in command.help
    for param in command.params:
        assert getattr(param, "help", None), param.name


def test_python_api_assign(runs, tmp_path):
    """`load_run(RUN).assign(NEW_INPUT, out)` is `convoscope assign`: the same published clusters."""
    from convoscope import load_run

    result = load_run(runs["run"]).assign(runs["new_input"], tmp_path / "api-new")
    cli_clusters = {(c["id"], c["name"], c["size"]) for c in RunStore(runs["new"]).read_json("aggregates")["clusters"]}
    assert {(c["id"], c["name"], c["size"]) for c in result.aggregates["clusters"]} == cli_clusters
    assert any(r["status"] == "appeared" for r in load_run(runs["run"]).compare(result)["clusters"])
    # the same conversations held in memory (record dicts): the same release; the input is written nowhere
    in_memory = [json.loads(line) for line in runs["new_input"].read_text().splitlines()]
    from_records = load_run(runs["run"]).assign(in_memory, tmp_path / "api-records")
    assert {(c["id"], c["name"], c["size"]) for c in from_records.aggregates["clusters"]} == cli_clusters
    assert from_records.store.manifest["input"].startswith("<") and not any(p.suffix == ".jsonl" for p in from_records.run_dir.rglob("*"))


def test_no_map_positions_from_a_run_that_published_none(tmp_path):
    """A run of 2 accounts publishes no cluster, so no position: assigned conversations must not get
    positions averaged from its withheld map (review finding 6)."""
    from convoscope.explorer.bundle import build_payload

    few = records([("cooking", 30, ["few-0", "few-1"]), ("tax", 30, ["few-0", "few-1"])], 3, "f")  # below min_accounts
    run_input = write_input(tmp_path / "few.jsonl", few)
    run_pipeline(run_input, tmp_path / "run", small_config(), show_progress=False)
    assert not [c for c in RunStore(tmp_path / "run").read_json("aggregates")["clusters"] if c["kind"] == "cluster"]
    new_input = write_input(tmp_path / "new.jsonl", records([("crypto", 60, POOL)], 4, "m"))
    store = assign(tmp_path / "run", new_input, tmp_path / "new", threshold=0.99, show_progress=False)
    xs = store.read_table("map").column("x").to_pylist()
    assert all(x != x for x in xs)  # NaN: no position
    assert build_payload(tmp_path / "new")["points"]["n"] == 0


def test_refuses_a_differential_privacy_run(runs, tmp_path):
    """New data into a DP run would publish counts outside its budget: refused with a reason, nothing written."""
    import shutil

    dp_run = tmp_path / "dp-run"
    shutil.copytree(runs["run"], dp_run)
    manifest = json.loads((dp_run / "manifest.json").read_text())
    manifest["config"]["privacy"]["mode"] = "dp"
    (dp_run / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(ConvoscopeError, match="differential-privacy run"):
        assign(dp_run, runs["new_input"], tmp_path / "out", show_progress=False)
    assert not (tmp_path / "out").exists()
