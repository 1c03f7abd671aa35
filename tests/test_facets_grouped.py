"""Several conversations per facets call (`facets.conversations_per_call`): calls within account buckets,
ids the stage assigns, entries that fail re-asked alone, and the word checks counting buckets."""

from __future__ import annotations

import json
from collections import defaultdict
from types import SimpleNamespace

import numpy as np
import pytest

from convoscope import policy
from convoscope.config import PrivacySettings, load_config
from convoscope.conversation_format import call_groups
from convoscope.pipeline import open_run
from convoscope.stage_runner import run_stage
from convoscope.stages.facets import FACETS, conversations_per_call
from convoscope.stages.ingest import INGEST, input_fingerprint
from convoscope.stages.screen import SCREEN, selected_conversations
from fakes.clio_responder import make_responder
from fakes.corpus import make_records, write_jsonl
from fakes.llm_servers import FakeOpenAIServer, last_user_text, schema_of
from fakes.shared_calls import answer_shared_calls, shared_call_ids, shared_conversations

COMPARED = ("conv_id", "request", "task", "language", "concerning", "failed")


def facets_only(data, out, settings: dict, url: str):
    cfg = load_config(None, {"llm.facets": f"openai:fake@{url}", "llm.cache": False, **settings})
    with open_run(data, str(data), out, cfg, show_progress=False) as ctx:
        fp = run_stage(INGEST, ctx, input_fingerprint(ctx))
        fp = run_stage(SCREEN, ctx, fp)
        run_stage(FACETS, ctx, fp, selected_conversations(ctx))
        return ctx.store


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    directory = tmp_path_factory.mktemp("grouped")
    return write_jsonl(directory / "c.jsonl", make_records(per_topic=12, accounts=20, distinct=True))


@pytest.fixture(scope="module")
def one_per_call(data, tmp_path_factory):
    with FakeOpenAIServer(responder=make_responder()) as server:
        store = facets_only(data, tmp_path_factory.mktemp("g1") / "run", {"facets.conversations_per_call": 1}, server.url)
        return store, server.request_count


def _rows(store) -> list[dict]:
    return store.read_table("facets", columns=list(COMPARED)).to_pylist()


def test_calls_are_shared_within_buckets_and_give_the_same_facets(data, one_per_call, tmp_path):
    single_store, single_calls = one_per_call
    records = [json.loads(line) for line in data.read_text().splitlines()]
    with FakeOpenAIServer(responder=answer_shared_calls(make_responder())) as server:
        store = facets_only(data, tmp_path / "run", {"facets.conversations_per_call": 4}, server.url)
        bodies = list(server.requests)
    assert _rows(store) == _rows(single_store)  # a model that keeps conversations apart: same answers
    table = store.read_table("facets").to_pylist()
    bucket = {r["conv_id"]: r["call_bucket"] for r in table}
    assert None not in bucket.values()
    record = store.stage_record("facets")
    assert record["conversations_per_call"] == 4
    assert record["calls"]["asked_alone_again"] == 0
    assert server.request_count == record["calls"]["shared"] + record["calls"]["single"] < single_calls / 2
    # every conversation of an account is in one bucket
    conversations = store.read_table("conversations", columns=["conv_id", "account"]).to_pylist()
    buckets_of_account = defaultdict(set)
    for c in conversations:
        buckets_of_account[c["account"]].add(bucket[c["conv_id"]])
    assert all(len(b) == 1 for b in buckets_of_account.values())
    # a shared call holds conversations of one bucket, under ids c1..cG, never the conversations' own ids
    by_text = {r["messages"][0]["content"]: r["id"] for r in records}
    shared = [b for b in bodies if shared_call_ids(b)]
    assert shared
    for body in shared:
        ids = shared_call_ids(body)
        assert 2 <= len(ids) <= 4 and ids == [f"c{j + 1}" for j in range(len(ids))]
        assert schema_of(body)["required"] == ids
        text = last_user_text(body)
        assert not any(r["id"] in text for r in records)
        held = [next(cid for t, cid in by_text.items() if t in conv) for conv in shared_conversations(text).values()]
        assert len(held) == len(ids) and len({bucket[c] for c in held}) == 1


def _dropping_last_id(body):
    answer = answer_shared_calls(make_responder())(body)
    ids = shared_call_ids(body)
    if not ids:
        return answer
    parsed = json.loads(answer)
    del parsed[ids[-1]]  # an answer missing an id
    parsed[ids[0]]["task"] = "The task is to the assistant is asked to help."  # an entry failing the answer checks
    return json.dumps(parsed)


def test_missing_and_failing_entries_are_asked_again_alone(data, one_per_call, tmp_path):
    single_store, _ = one_per_call
    with FakeOpenAIServer(responder=_dropping_last_id) as server:
        store = facets_only(data, tmp_path / "run", {"facets.conversations_per_call": 4, "llm.schema_retries": 0}, server.url)
        bodies = list(server.requests)
    record = store.stage_record("facets")
    shared = sum(1 for b in bodies if shared_call_ids(b))
    assert shared == record["calls"]["shared"] > 0
    # two entries of each shared call re-asked alone (one missing, one echoing the prompt), none dropped
    assert record["calls"]["asked_alone_again"] == 2 * shared
    assert record["failed"] == 0
    assert _rows(store) == _rows(single_store)


def test_call_groups_stay_in_their_bucket_size_and_token_budget():
    buckets = [0, 1, 0, 0, 1, 0, 0, 2, 0]
    tokens = [10, 10, 10, 900, 10, 10, 10, 10, 10]
    groups = call_groups(buckets, tokens, size=3, budget=1000)
    assert sorted(i for g in groups for i in g) == list(range(len(buckets)))
    for g in groups:
        assert len({buckets[i] for i in g}) == 1 and len(g) <= 3 and sum(tokens[i] for i in g) <= 1000
    assert [0, 2, 3] in groups and [5, 6, 8] in groups  # 3 fills the budget after 0 and 2: the next group starts
    long_alone = call_groups([0, 0, 0], [200, 1000, 200], size=4, budget=1000)
    assert [1] in long_alone  # a conversation filling the budget goes alone


@pytest.mark.parametrize("mode, per_facet, llm, expected", [
    ("thresholds", False, True, 4), ("dp", False, True, 1), ("thresholds", True, True, 1), ("thresholds", False, False, 1)])
def test_shared_calls_only_where_sound(mode, per_facet, llm, expected):
    overrides = {"privacy.mode": mode, "facets.per_facet_calls": per_facet, "facets.conversations_per_call": 4}
    if llm:
        overrides["llm.facets"] = "openai:m@http://127.0.0.1:9"
    assert conversations_per_call(SimpleNamespace(config=load_config(None, overrides))) == expected


def test_word_checks_count_buckets_so_a_copied_word_counts_once():
    """8 accounts of one bucket all 'used' a name a model copied between them; 5 accounts in 5 buckets
    really used a word. Counting accounts would publish the copied name; counting buckets does not."""
    texts = [f"help with a bicycle for Quargmire {i}" for i in range(8)] + [f"help with a bicycle repair {i}" for i in range(5)]
    accounts = np.arange(13)
    buckets = np.array([0] * 8 + [1, 2, 3, 4, 5])
    members = np.arange(13)
    p = PrivacySettings()
    assert policy.TextChecker(texts, accounts, p).problems("Bicycles of Quargmire", members) == []  # what a shared call would break
    assert policy.TextChecker(texts, buckets, p).problems("Bicycles of Quargmire", members) == ["Quargmire"]
    assert policy.TextChecker(texts, buckets, p).problems("Help with Bicycle repair", members) == []  # 6 buckets used them


def test_a_rerun_of_the_same_data_reuses_every_shared_call(data, tmp_path):
    cache = tmp_path / "cache"
    settings = {"facets.conversations_per_call": 4, "llm.cache": True, "llm.cache_dir": str(cache)}
    with FakeOpenAIServer(responder=answer_shared_calls(make_responder())) as server:
        facets_only(data, tmp_path / "a", settings, server.url)
        first = server.request_count
        facets_only(data, tmp_path / "b", settings, server.url)
        assert server.request_count == first > 0  # the same buckets and groups: every call from the cache


def test_the_command_line_sets_conversations_per_call(data, tmp_path):
    """`run --conversations-per-call N` reaches `facets.conversations_per_call` (an out-of-range N is the
    config's clear error, before anything runs), and a run with it shares calls."""
    from typer.testing import CliRunner

    from convoscope.cli import app
    from convoscope.store import RunStore

    refused = CliRunner().invoke(app, ["run", str(data), "--out", str(tmp_path / "bad"), "--conversations-per-call", "17", "--quiet"])
    assert refused.exit_code != 0 and "conversations_per_call" in f"{refused.output}{refused.exception}"
    with FakeOpenAIServer(responder=answer_shared_calls(make_responder())) as server:
        result = CliRunner().invoke(app, ["run", str(data), "--out", str(tmp_path / "run"), "--llm", f"openai:fake@{server.url}",
                                          "--no-cache", "--quiet", "--conversations-per-call", "4"])
        assert result.exit_code == 0, result.output
        facet_calls = sum(1 for body in server.requests if shared_call_ids(body))
    store = RunStore(tmp_path / "run")
    assert store.manifest["config"]["facets"]["conversations_per_call"] == 4
    assert facet_calls > 0
