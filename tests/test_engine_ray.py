"""The Ray engine on a local Ray (num_cpus=2): the same artifacts as the local engine (centroid assignment on
the workers included), input read from S3 (a local moto server) as from disk, a killed worker loses nothing
and re-pays at most the batch it had in flight, and a rerun resumes (docs/scale.md)."""

from __future__ import annotations

import contextlib
import importlib.util
import os
import random
import signal
import threading
import time
from pathlib import Path

import numpy as np
import pytest

ray = pytest.importorskip("ray")

from convoscope import kmeans  # noqa: E402
from convoscope.config import load_config  # noqa: E402
from convoscope.errors import InputError  # noqa: E402
from convoscope.conversation_format import LLM_BATCH  # noqa: E402
from convoscope.pipeline import run_pipeline  # noqa: E402
from convoscope.store import RunStore  # noqa: E402
from fakes.clio_responder import make_responder  # noqa: E402
from fakes.corpus import SUFFIXES, TOPICS, write_jsonl  # noqa: E402
from fakes.llm_servers import FakeOpenAIServer, schema_of  # noqa: E402
from fakes.s3_server import local_s3, upload_tree  # noqa: E402

SETTINGS = {"cluster.conversations_per_cluster": 40, "privacy.min_conversations": 5, "privacy.min_accounts": 3,
            "engine.shard_conversations": 400}


@pytest.fixture(scope="module", autouse=True)
def local_ray():
    """One local Ray for the module (starting one takes 10-20 s), and a local S3 (moto, when installed) whose
    address and credentials are in the environment before Ray starts, so its workers inherit them as a
    node inherits its own; yields the S3 client or None."""
    with contextlib.ExitStack() as stack:
        s3 = stack.enter_context(local_s3()) if importlib.util.find_spec("moto") else None
        ray.init(num_cpus=2, object_store_memory=150 * 1024**2, include_dashboard=False, configure_logging=False)
        stack.callback(ray.shutdown)
        yield s3


def _records(n: int, seed: int = 0) -> list[dict]:
    """n distinct single-prompt conversations on the corpus topics, from 60 accounts."""
    rng = random.Random(seed)
    topics = list(TOPICS)
    out = []
    for i in range(n):
        topic = topics[i % len(topics)]
        text = f"{rng.choice(TOPICS[topic])}{rng.choice(SUFFIXES)} (request {i})"
        out.append({"id": f"c{i}", "user": f"acct-{rng.randrange(60)}", "created_at": f"2026-01-{1 + i % 28:02d}T10:00:00+00:00",
                    "messages": [{"role": "user", "content": text}, {"role": "assistant", "content": "Sure."}]})
    return out


def _input_dir(tmp_path: Path, n: int) -> Path:
    """n conversations in three files (one in a sub-directory), the second file repeating five of the
    first word for word (dropped as duplicates across files)."""
    records = _records(n)
    root = tmp_path / "input"
    (root / "more").mkdir(parents=True)
    half = n // 2
    write_jsonl(root / "a.jsonl", records[:half])
    write_jsonl(root / "b.jsonl", records[half:-10] + records[:5])  # ids and text repeated: exact duplicates
    write_jsonl(root / "more" / "c.jsonl", records[-10:])
    return root


def _without_map(aggregates: dict) -> dict:
    # The map (UMAP) is not reproducible from run to run on the local engine itself in LLM mode (two local
    # runs of the same input in one process place clusters differently), so cluster positions are left out.
    return {**aggregates, "clusters": [{k: v for k, v in c.items() if k not in ("x", "y")} for c in aggregates["clusters"]]}


def _assert_same_run(local: RunStore, ray_run: RunStore) -> None:
    for table in ("conversations", "facets", "base_assignments", "hierarchy", "assignments", "clusters"):
        assert local.read_table(table).equals(ray_run.read_table(table)), table
    assert np.array_equal(local.read_array("embeddings"), ray_run.read_array("embeddings"))
    assert _without_map(local.read_json("aggregates")) == _without_map(ray_run.read_json("aggregates"))
    for stage in ("ingest", "facets", "embed", "cluster", "aggregates"):  # same fingerprints: either engine resumes the other's run
        assert local.stage_fingerprint(stage) == ray_run.stage_fingerprint(stage), stage


def test_extractive_run_is_the_local_engines_and_a_rerun_resumes(tmp_path, monkeypatch):
    # k-means fitted on a sample and every row assigned to its nearest centroid in blocks (the path of inputs
    # above 50,000 rows), here from 1,000 rows and in blocks of 512: on the Ray engine, four blocks on the workers
    monkeypatch.setattr(kmeans, "FIT_SAMPLE_ROWS", 1000)
    monkeypatch.setattr(kmeans, "ASSIGN_BLOCK_ROWS", 512)
    data = _input_dir(tmp_path, 2000)
    local = run_pipeline(data, tmp_path / "local", load_config(None, {**SETTINGS, "llm.cache_dir": str(tmp_path / "cache-local")}), show_progress=False)
    cfg = load_config(None, {**SETTINGS, "llm.cache_dir": str(tmp_path / "cache-ray"), "engine.kind": "ray"})
    ray_run = run_pipeline(data, tmp_path / "ray", cfg, show_progress=False)
    assert ray_run.stage_record("ingest")["report"]["duplicates"] == 5
    assert ray_run.stage_record("ingest")["report"]["conversations"] == 2000
    assert ray_run.manifest["engine"]["kind"] == "ray"
    assert ray_run.stage_record("cluster")["assigned_blocks"] == 4
    assert {k: ray_run.stage_record("cluster")[k] for k in ("k", "rule")} == {k: local.stage_record("cluster")[k] for k in ("k", "rule")}
    _assert_same_run(local, ray_run)
    # a rerun on either engine skips every stage (same fingerprints), the local engine's run included
    before = {s: ray_run.stage_record(s)["finished_at"] for s in ("ingest", "facets", "embed", "aggregates")}
    run_pipeline(data, tmp_path / "ray", cfg, show_progress=False)
    run_pipeline(data, tmp_path / "local", cfg, show_progress=False)
    assert {s: RunStore(tmp_path / "ray").stage_record(s)["finished_at"] for s in before} == before
    assert RunStore(tmp_path / "local").stage_record("embed")["finished_at"] == local.stage_record("embed")["finished_at"]


@pytest.mark.parametrize("setting", ["ingest.account_field", "ingest.time_field"])
def test_a_named_field_no_conversation_has_is_an_error_as_on_the_local_engine(tmp_path, setting):
    """A mistyped --account-field / --time-field: an error at ingest, checked on the merged report of all files."""
    data = _input_dir(tmp_path, 60)
    cfg = load_config(None, {**SETTINGS, "engine.kind": "ray", setting: "usr"})
    with pytest.raises(InputError, match="no conversation has .* in field 'usr'"):
        run_pipeline(data, tmp_path / "ray", cfg, show_progress=False)
    # at ingest, before any other stage ran (it used to surface only when the name stage re-read the input locally)
    assert all(RunStore(tmp_path / "ray").stage_record(stage) is None for stage in ("ingest", "facets", "embed", "cluster"))
    with pytest.raises(InputError, match="no conversation has .* in field 'usr'"):  # the local engine says the same
        run_pipeline(data, tmp_path / "local", load_config(None, {**SETTINGS, setting: "usr"}), show_progress=False)


def test_facets_failing_for_every_conversation_stop_the_run_as_on_the_local_engine(tmp_path):
    """Checked by the driver over every shard's count (each shard alone may fail wholly in a partial failure)."""
    from convoscope.stages.facets import FacetsFailed

    data = _input_dir(tmp_path, 60)
    with FakeOpenAIServer(responder=lambda body: "not json") as server:
        cfg = load_config(None, {**SETTINGS, "engine.kind": "ray", "engine.shard_conversations": 20, "llm.facets": f"openai:fake@{server.url}",
                                 "llm.cache": False, "llm.schema_retries": 0})
        with pytest.raises(FacetsFailed, match=r"failed for every conversation \(60 of 60.*first error: the answer contains no JSON object"):
            run_pipeline(data, tmp_path / "ray", cfg, show_progress=False)
    assert RunStore(tmp_path / "ray").stage_record("facets") is None and not RunStore(tmp_path / "ray").has("table:facets")


def test_input_on_s3_reads_as_the_same_files_on_disk(tmp_path, local_ray, monkeypatch):
    s3 = local_ray
    if s3 is None:
        pytest.skip("moto is not installed (pip install 'moto[server]': the test extra)")
    data = _input_dir(tmp_path, 600)
    s3.create_bucket(Bucket="chats")
    upload_tree(s3, "chats", "week-1", data)
    local = run_pipeline(data, tmp_path / "local", load_config(None, {**SETTINGS, "llm.cache_dir": str(tmp_path / "c1")}), show_progress=False)
    cfg = load_config(None, {**SETTINGS, "llm.cache_dir": str(tmp_path / "c2"), "engine.kind": "ray"})
    remote = run_pipeline("s3://chats/week-1/", tmp_path / "ray", cfg, show_progress=False)
    assert remote.manifest["input"] == "s3://chats/week-1/"
    assert remote.stage_record("ingest")["report"]["duplicates"] == 5  # across S3 objects, as across files
    for table in ("conversations", "facets", "base_assignments"):
        assert local.read_table(table).equals(remote.read_table(table)), table
    # a bad record in an object stops the run with its URI, line and field, as on disk
    (data / "more" / "c.jsonl").write_text('{"id": "x1", "user": "u", "messages": [{"role": "user"}]}\n', encoding="utf-8")
    upload_tree(s3, "chats", "week-2", data)
    with pytest.raises(InputError, match=r"s3://chats/week-2/more/c\.jsonl:1: field 'messages\[0\]\.content'"):
        run_pipeline("s3://chats/week-2/", tmp_path / "bad", cfg, show_progress=False)


def _facet_requests(server: FakeOpenAIServer) -> int:
    return sum(1 for body in server.requests if "request" in ((schema_of(body) or {}).get("properties") or {}))


def test_llm_run_is_the_local_engines(tmp_path):
    data = _input_dir(tmp_path, 1000)
    with FakeOpenAIServer(responder=make_responder(echo_request=True)) as server:
        # one conversation per facets call on both engines: the Ray shards always make one (stages/facets.py,
        # conversations_per_call), the local engine groups 4 by default, and grouped answers differ
        llm = {"llm.facets": f"openai:fake@{server.url}", "facets.conversations_per_call": 1}
        local = run_pipeline(data, tmp_path / "local", load_config(None, {**SETTINGS, **llm, "llm.cache_dir": str(tmp_path / "c1")}), show_progress=False)
        local_facets = _facet_requests(server)
        ray_run = run_pipeline(data, tmp_path / "ray", load_config(None, {**SETTINGS, **llm, "llm.cache_dir": str(tmp_path / "c2"), "engine.kind": "ray"}),
                               show_progress=False)
        ray_facets = _facet_requests(server) - local_facets
    assert local_facets == ray_facets == 1000  # one call a conversation, on either engine
    _assert_same_run(local, ray_run)
    usage = ray_run.manifest["llm_usage"]  # the workers' calls are counted in the run's usage
    assert usage["roles"]["facets"]["calls"] == 1000


def _worker_pids(name: str) -> list[int]:
    """Processes of Ray Data actors running `name` (their process title names the class)."""
    pids = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                cmdline = Path(f"/proc/{entry}/cmdline").read_bytes().decode(errors="replace")
            except OSError:
                continue
            if name in cmdline and "ray::" in cmdline:
                pids.append(int(entry))
    return pids


def test_a_killed_worker_loses_nothing_and_repays_only_its_batch(tmp_path):
    n = 1600
    data = _input_dir(tmp_path, n)
    kept = n  # the five repeated conversations are dropped as duplicates
    killed: list[int] = []
    with FakeOpenAIServer(responder=make_responder(echo_request=True), latency=0.01) as server:
        cfg = load_config(None, {**SETTINGS, "llm.facets": f"openai:fake@{server.url}", "llm.cache_dir": str(tmp_path / "cache"),
                                 "engine.kind": "ray"})

        def kill_one_worker() -> None:
            deadline = time.monotonic() + 300
            while time.monotonic() < deadline and not killed:
                if _facet_requests(server) >= 500:  # mid-run: some shards done, some in flight
                    pids = _worker_pids("ShardWorker")
                    if pids:
                        os.kill(pids[0], signal.SIGKILL)
                        killed.append(pids[0])
                        return
                time.sleep(0.05)

        killer = threading.Thread(target=kill_one_worker, daemon=True)
        killer.start()
        store = run_pipeline(data, tmp_path / "run", cfg, show_progress=False)
        killer.join(timeout=5)
        paid = _facet_requests(server)
    assert killed, "no worker was killed: the test did not test anything"
    facets = store.read_table("facets")
    assert facets.num_rows == kept and not any(facets.column("failed").to_pylist())  # nothing lost
    assert sorted(facets.column("conv_id").to_pylist()) == sorted(store.read_table("conversations").column("conv_id").to_pylist())
    # the retried shard's finished batches come from the cache: at most the killed actor's batch in flight is paid again
    assert kept <= paid <= kept + LLM_BATCH
