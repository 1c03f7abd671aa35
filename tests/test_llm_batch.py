"""Batch mode (`[llm] batch = true`) against fakes of the Anthropic Message Batches API and the OpenAI
Batch API over real loopback HTTP: submission, polling, results through the same validation, cache and
usage as live calls, half prices, resume after an interruption, and resubmission of failed items."""

from __future__ import annotations

import asyncio
import hashlib
import json
from pathlib import Path

import pytest
from fakes.llm_settings import fast_settings
from fakes.llm_servers import FakeAnthropicServer, FakeOpenAIServer, last_user_text, schema_of

from convoscope.errors import BudgetExceeded, ConfigError, LLMFatalError
from convoscope.llm import ChatMessage, LLMRequest, LLMSettings, build_client
from convoscope.llm.batch import STATE_FILE

SCHEMA = {
    "type": "object",
    "properties": {"summary": {"type": "string"}, "language": {"type": "string", "enum": ["en", "fr"]}},
    "required": ["summary", "language"],
    "additionalProperties": False,
}
SERVERS = {"anthropic": (FakeAnthropicServer, "claude-3-5-haiku-20241022"), "openai": (FakeOpenAIServer, "gpt-4o-mini")}


def responder(body: dict) -> str:
    text = last_user_text(body)
    if schema_of(body) is None:
        return f"answer to {text}"
    return json.dumps({"summary": f"about {text}", "language": "en"})


def settings(kind: str, url: str, tmp_path: Path, **overrides) -> LLMSettings:
    return fast_settings(f"{kind}:{SERVERS[kind][1]}@{url}", tmp_path, **{"batch": True, **overrides})


def facets(n: int, start: int = 0, role: str = "facets") -> list[LLMRequest]:
    return [LLMRequest(messages=(ChatMessage("user", f"conversation {i}"),), system="Summarise.", json_schema=SCHEMA, task="facets", role=role)
            for i in range(start, start + n)]


def run(llm_settings: LLMSettings, requests: list[LLMRequest], run_dir: Path, *, timeout: float | None = None):
    async def go():
        client = build_client(llm_settings, progress=False, run_dir=run_dir)
        try:
            responses = await asyncio.wait_for(client.complete_many(requests), timeout)
            return responses, client.usage_summary()
        finally:
            await client.aclose()

    return asyncio.run(go())


@pytest.fixture(autouse=True)
def keys(monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-good")
    monkeypatch.setenv("ANTHROPIC_API_KEY", "ak-good")


@pytest.mark.parametrize("kind", ["anthropic", "openai"])
def test_batch_answers_validated_cached_and_half_price(kind, tmp_path):
    server_class, model = SERVERS[kind]
    with server_class(responder=responder) as server:
        s = settings(kind, server.url, tmp_path)
        responses, usage = run(s, facets(6), tmp_path / "run")
        again, usage_again = run(s, facets(6), tmp_path / "run")  # every answer now in the cache
        live_usage = run(s.model_copy(update={"batch": False, "cache": False}), facets(6), tmp_path / "run")[1]
    assert [r.parsed for r in responses] == [{"summary": f"about conversation {i}", "language": "en"} for i in range(6)]
    assert not any(r.failed or r.cached for r in responses) and all(r.cached for r in again)
    assert server.batch_creates == 1 and len(next(iter(server.batches.values()))["items"]) == 6
    roles = usage["roles"]["facets"]
    assert roles["batch_requests"] == 6 and roles["requests"] == 6 and usage["requests_sent"] == 6
    assert usage["tasks"]["facets"]["calls"] == 6 and usage_again["total"]["cached_calls"] == 6 and usage_again["requests_sent"] == 0
    # the same tokens cost half through the batch interface
    assert usage["total"]["input_tokens"] == live_usage["total"]["input_tokens"]
    assert usage["total"]["cost_usd"] == pytest.approx(live_usage["total"]["cost_usd"] / 2)
    assert not (tmp_path / "run" / STATE_FILE).exists() or json.loads((tmp_path / "run" / STATE_FILE).read_text())["batches"] == {}


@pytest.mark.parametrize("kind", ["anthropic", "openai"])
def test_interrupted_batch_run_resumes_polling_without_resubmitting(kind, tmp_path):
    server_class, _ = SERVERS[kind]
    with server_class(responder=responder) as server:
        s = settings(kind, server.url, tmp_path, cache=False)
        server.hold_batches = True  # the provider is still working when the run is interrupted
        with pytest.raises((asyncio.TimeoutError, TimeoutError)):
            run(s, facets(5), tmp_path / "run", timeout=0.5)
        state = json.loads((tmp_path / "run" / STATE_FILE).read_text())["batches"]
        assert server.batch_creates == 1 and list(state) == list(server.batches)
        # the state file holds batch ids and keyed hashes only: no prompt text, no plain hash of a prompt
        raw = (tmp_path / "run" / STATE_FILE).read_text()
        plain = {hashlib.sha256(body.encode()).hexdigest() for body in (f"conversation {i}" for i in range(5))}
        assert "conversation" not in raw and "Summarise" not in raw and not any(p in raw for p in plain)
        assert all(len(c) == 64 for c in next(iter(state.values()))["custom_ids"])
        assert (tmp_path / "run" / STATE_FILE).stat().st_mode & 0o077 == 0  # private, as the run directory
        server.hold_batches = False
        responses, usage = run(s, facets(5), tmp_path / "run")
    assert server.batch_creates == 1  # polled the batch of the first run; nothing resubmitted
    assert [r.parsed["summary"] for r in responses] == [f"about conversation {i}" for i in range(5)]
    assert usage["requests_sent"] == 0 and usage["roles"]["facets"]["batch_requests"] == 5  # paid once, by the first run
    assert json.loads((tmp_path / "run" / STATE_FILE).read_text())["batches"] == {}


@pytest.mark.parametrize("kind", ["anthropic", "openai"])
@pytest.mark.parametrize("fault", ["errored", "expired"])
def test_failed_item_is_resubmitted_alone(kind, fault, tmp_path):
    server_class, _ = SERVERS[kind]
    with server_class(responder=responder) as server:
        server.fail_next_items(1, kind=fault)
        responses, usage = run(settings(kind, server.url, tmp_path, cache=False), facets(4), tmp_path / "run")
    assert server.batch_creates == 2
    first, second = server.batches.values()
    assert len(first["items"]) == 4 and len(second["items"]) == 1 and second["items"][0][0] == first["items"][0][0]
    assert not any(r.failed for r in responses) and responses[0].parsed["summary"] == "about conversation 0"
    assert usage["requests_sent"] == 5 and usage["roles"]["facets"]["batch_requests"] == 4


@pytest.mark.parametrize("kind", ["anthropic", "openai"])
def test_refused_item_fails_alone_and_unanswered_items_fail_after_resubmits(kind, tmp_path):
    server_class, _ = SERVERS[kind]
    with server_class(responder=responder) as server:
        server.fail_next_items(1, kind="invalid")
        responses, usage = run(settings(kind, server.url, tmp_path, cache=False), facets(3), tmp_path / "run")
        assert server.batch_creates == 1 and responses[0].failed and ("errored" in responses[0].error or "failed" in responses[0].error)
        assert not responses[1].failed and usage["roles"]["facets"]["failed"] == 1
        server.fail_next_items(3, kind="expired")  # expires in the batch and in both resubmissions
        responses, _ = run(settings(kind, server.url, tmp_path, cache=False, batch_resubmits=2), facets(1, start=10), tmp_path / "run")
    assert server.batch_creates == 4 and responses[0].failed and "expired" in responses[0].error


@pytest.mark.parametrize("kind", ["anthropic", "openai"])
def test_schema_miss_in_a_batch_is_re_asked_live_with_feedback(kind, tmp_path):
    def sloppy(body: dict) -> str:
        first_ask = len([m for m in body["messages"] if m["role"] == "user"]) == 1
        if first_ask and "conversation 1" in last_user_text(body):
            return '{"summary": "about conversation 1", "language": "klingon"}'  # misses the enum
        return responder(body) if first_ask else json.dumps({"summary": "fixed", "language": "fr"})

    server_class, _ = SERVERS[kind]
    with server_class(responder=sloppy) as server:
        responses, usage = run(settings(kind, server.url, tmp_path), facets(3), tmp_path / "run")
    live = [r for r in server.requests if "messages" in r and "requests" not in r]
    assert server.batch_creates == 1 and len(live) == 1 and "klingon" in json.dumps(live[0]["messages"])
    assert responses[1].parsed == {"summary": "fixed", "language": "fr"} and not responses[1].failed
    assert usage["roles"]["facets"]["requests"] == 4 and usage["roles"]["facets"]["batch_requests"] == 3


def test_answer_check_applies_to_batch_answers(tmp_path):
    from dataclasses import replace

    requests = [replace(r, answer_check=lambda value: "say fr" if value["language"] != "fr" else None) for r in facets(2)]
    with FakeAnthropicServer(responder=lambda body: json.dumps({"summary": "s", "language": "fr" if len(body["messages"]) > 1 else "en"})) as server:
        # the first answer (in the batch) fails the check; the live re-ask with its feedback passes
        responses, usage = run(settings("anthropic", server.url, tmp_path), requests, tmp_path / "run")
    assert all(r.parsed["language"] == "fr" for r in responses)
    assert server.batch_creates == 1 and usage["roles"]["facets"]["requests"] == 4  # 2 in the batch, 2 live re-asks


def test_batches_are_split_to_the_size_limit_and_naming_stays_live(tmp_path):
    with FakeOpenAIServer(responder=responder) as server:
        requests = facets(7) + facets(2, start=100, role="naming")
        responses, usage = run(settings("openai", server.url, tmp_path, batch_max_items=3), requests, tmp_path / "run")
    assert [len(b["items"]) for b in server.batches.values()] == [3, 3, 1]
    assert not any(r.failed for r in responses) and usage["roles"]["naming"]["batch_requests"] == 0
    assert usage["roles"]["naming"]["requests"] == 2


def test_duplicate_requests_are_submitted_once(tmp_path):
    with FakeAnthropicServer(responder=responder) as server:
        responses, usage = run(settings("anthropic", server.url, tmp_path, cache=False), facets(2) + facets(2), tmp_path / "run")
    assert len(next(iter(server.batches.values()))["items"]) == 2
    assert [r.parsed["summary"] for r in responses] == ["about conversation 0", "about conversation 1"] * 2
    assert usage["tasks"]["facets"]["calls"] == 4 and usage["roles"]["facets"]["batch_requests"] == 2


def test_cost_cap_refuses_a_batch_before_submitting_it(tmp_path):
    with FakeAnthropicServer(responder=responder) as server:
        s = settings("anthropic", server.url, tmp_path, max_cost_usd=0.001, prices={"claude-3-5-haiku": (100.0, 100.0)})
        with pytest.raises(BudgetExceeded):
            run(s, facets(5), tmp_path / "run")
    assert server.batch_creates == 0


def test_batch_needs_a_hosted_api(tmp_path):
    with pytest.raises(ConfigError, match="--batch needs a hosted API"):
        build_client(LLMSettings(facets="llamacpp:/nowhere/model.gguf", batch=True, cache=False))


def test_server_without_a_batch_api_is_a_clear_error(tmp_path):
    from fakes.llm_http import FakeHTTPServer, json_reply

    class NoBatches(FakeHTTPServer):
        def route(self, method, path, headers, body):
            return json_reply(404, {"error": {"message": "Not Found"}})

    with NoBatches() as server, pytest.raises(LLMFatalError, match="no OpenAI Batch API here"):
        run(settings("openai", server.url, tmp_path, cache=False), facets(1), tmp_path / "run")


def test_openai_batch_refused_at_validation_is_fatal(tmp_path, monkeypatch):
    from convoscope.llm.backends.openai_compat import OpenAIBatches

    original = OpenAIBatches.entry
    monkeypatch.setattr(OpenAIBatches, "entry", lambda self, c, r: {**original(self, c, r), "url": "/v1/wrong"})
    with FakeOpenAIServer(responder=responder) as server, pytest.raises(LLMFatalError, match="refused: invalid_request at line 1"):
        run(settings("openai", server.url, tmp_path, cache=False), facets(2), tmp_path / "run")


@pytest.mark.slow  # a whole run (embedding, UMAP): about a minute on a busy 2-core machine; the LLM part takes a second
def test_pipeline_with_batch_mode_end_to_end(tmp_path):
    """`--batch` on a whole run: facets (and the audits) through the batch API, naming and the hierarchy
    live; the run directory keeps no open batch once the run is done; a rerun costs nothing."""
    from fakes.clio_responder import make_responder
    from fakes.corpus import make_records, write_jsonl

    from convoscope.config import load_config
    from convoscope.pipeline import run_pipeline

    data = write_jsonl(tmp_path / "c.jsonl", make_records(per_topic=20, accounts=20))
    with FakeOpenAIServer(responder=make_responder()) as server:
        overrides = {"cluster.conversations_per_cluster": 10, "privacy.min_conversations": 5, "privacy.min_accounts": 3,
                     "llm.facets": f"openai:gpt-4o-mini@{server.url}", "llm.batch": True, "llm.batch_poll_s": 0.01,
                     "llm.cache_dir": str(tmp_path / "cache")}
        store = run_pipeline(data, tmp_path / "run", load_config(None, overrides), show_progress=False)
        sent = server.request_count
        again = run_pipeline(data, tmp_path / "run2", load_config(None, overrides), show_progress=False)
        assert server.request_count == sent
    usage = store.manifest["llm_usage"]
    conversations = store.read_table("facets").num_rows
    assert usage["roles"]["facets"]["batch_requests"] == conversations and usage["roles"]["facets"]["failed"] == 0
    assert usage["roles"].get("naming", {}).get("batch_requests", 0) == 0 and usage["roles"]["naming"]["requests"] > 0
    assert server.batch_creates >= 1 and json.loads((tmp_path / "run" / STATE_FILE).read_text())["batches"] == {}
    assert again.manifest["llm_usage"]["total"]["requests"] == 0


def test_answers_are_on_disk_before_their_batch_leaves_the_state_file(tmp_path, monkeypatch):
    """A kill right after a batch leaves llm-batches.json must not lose its paid answers: they are
    validated and written to the response cache (flushed, not only buffered) before that."""
    import sqlite3

    from convoscope.llm.batch import BatchState
    from convoscope.llm.cache import CACHE_FILE

    rows_at_removal: list[int] = []
    original = BatchState.remove

    def remove(self, batch_id):
        with sqlite3.connect(tmp_path / "cache" / CACHE_FILE) as db:  # another connection: sees only what is committed
            rows_at_removal.append(db.execute("SELECT COUNT(*) FROM responses").fetchone()[0])
        original(self, batch_id)

    monkeypatch.setattr(BatchState, "remove", remove)
    with FakeAnthropicServer(responder=responder) as server:
        run(settings("anthropic", server.url, tmp_path), facets(7), tmp_path / "run")
    assert rows_at_removal == [7]


def test_progress_follows_the_batches_and_ends_at_the_number_of_requests(tmp_path, monkeypatch):
    from convoscope.llm import client as client_module

    advanced: list[int] = []

    class Recorder:
        def __init__(self, *args):
            pass

        def __enter__(self):
            return advanced.append

        def __exit__(self, *exc):
            return None

    monkeypatch.setattr(client_module.Client, "_progress_bar", lambda self, description, total: Recorder())
    with FakeOpenAIServer(responder=responder) as server:
        server.batch_polls = 3  # two polls see the batch running, the third sees it end
        server.fail_next_items(1, kind="expired")  # resubmitted: counted back, then done again
        requests = facets(5) + facets(2)  # two duplicates
        responses, _ = run(settings("openai", server.url, tmp_path, cache=False), requests, tmp_path / "run")
    assert not any(r.failed for r in responses)
    assert sum(advanced) == len(requests) and -1 in advanced


def test_state_file_shared_by_two_processes_keeps_both_batches(tmp_path):
    """Two clients on one run directory (e.g. the Ray engine's workers): each change is a locked
    read-modify-write, so neither drops the other's open batches."""
    from convoscope.llm.batch import BatchState

    first, second = BatchState(tmp_path), BatchState(tmp_path)
    first.add("batch_a", "openai:m", ["a" * 64])
    second.add("batch_b", "openai:m", ["b" * 64])
    first.remove("batch_a")
    assert BatchState(tmp_path).open_for("openai:m") == {"batch_b": ["b" * 64]}
    (tmp_path / STATE_FILE).write_text("{not json")
    with pytest.raises(LLMFatalError, match="unreadable batch state"):
        BatchState(tmp_path)


def test_chunk_size_tells_stages_to_hand_over_large_chunks_in_batch_mode(tmp_path):
    from convoscope.llm.client import BATCH_CHUNK

    batched = build_client(LLMSettings(facets="openai:m@http://127.0.0.1:9", batch=True, cache=False), progress=False)
    live = build_client(LLMSettings(facets="openai:m@http://127.0.0.1:9", cache=False), progress=False)
    assert batched.chunk_size("facets", 256) == BATCH_CHUNK and batched.chunk_size("auditor", 256) == BATCH_CHUNK
    assert batched.chunk_size("naming", 256) == 256 and live.chunk_size("facets", 256) == 256


def test_cost_cap_submits_what_fits_then_stops_and_a_rerun_goes_on(tmp_path):
    from convoscope.llm.limits import approx_request_tokens

    requests = facets(5)
    worst = (approx_request_tokens(requests[0]) + requests[0].max_tokens) * 100.0 / 1e6 * 0.5  # $100/M, batch half price
    with FakeAnthropicServer(responder=responder) as server:
        s = settings("anthropic", server.url, tmp_path, max_cost_usd=2.5 * worst, prices={"claude-3-5-haiku": (100.0, 100.0)})
        with pytest.raises(BudgetExceeded):
            run(s, requests, tmp_path / "run")
        assert [len(b["items"]) for b in server.batches.values()] == [2]  # the two that fit under the cap
        responses, usage = run(s.model_copy(update={"max_cost_usd": 100.0}), requests, tmp_path / "run")
    assert [len(b["items"]) for b in server.batches.values()] == [2, 3]  # the rerun pays only for the rest
    assert usage["total"]["cached_calls"] == 2 and not any(r.failed for r in responses)
