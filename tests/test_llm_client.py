"""The LLM client against fake OpenAI and Anthropic servers over real loopback HTTP."""

from __future__ import annotations

import asyncio
from dataclasses import replace
import json
import time
from pathlib import Path

import pytest
from fakes.llm_settings import fast_settings
from fakes.llm_servers import FakeAnthropicServer, FakeOpenAIServer, schema_of

from convoscope.errors import BudgetExceeded, ConfigError, LLMFatalError
from convoscope.llm import ChatMessage, LLMRequest, LLMSettings, build_client

SCHEMA = {
    "type": "object",
    "properties": {"summary": {"type": "string"}, "language": {"type": "string", "enum": ["en", "fr"]}},
    "required": ["summary", "language"],
    "additionalProperties": False,
}


def settings(spec: str, tmp_path: Path, **overrides) -> LLMSettings:
    return fast_settings(spec, tmp_path, **overrides)


def ask(text: str, **fields) -> LLMRequest:
    return LLMRequest(messages=(ChatMessage("user", text),), **fields)


def run_many(llm_settings: LLMSettings, requests: list[LLMRequest]):
    async def go():
        client = build_client(llm_settings, progress=False)
        try:
            return await client.complete_many(requests, description="test"), client
        finally:
            await client.aclose()

    return asyncio.run(go())


@pytest.fixture(autouse=True)
def keys(monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-good")
    monkeypatch.setenv("ANTHROPIC_API_KEY", "ak-good")


# -- happy paths -----------------------------------------------------------------------------------


def test_openai_text_and_structured(tmp_path):
    with FakeOpenAIServer(api_key="sk-good") as server:
        s = settings(f"openai:fake-model@{server.url}", tmp_path)
        (text, structured), client = run_many(s, [ask("hello", system="be brief"), ask("hi", json_schema=SCHEMA, task="facets")])
    assert text.text == "This is a fake answer." and not text.failed
    assert structured.parsed == {"summary": "example summary", "language": "en"}
    # the two requests run concurrently, so they may arrive in either order
    first = next(r for r in server.requests if "response_format" not in r)
    second = next(r for r in server.requests if "response_format" in r)
    assert first["messages"][0] == {"role": "system", "content": "be brief"}
    assert first["model"] == "fake-model" and "response_format" not in first
    assert second["response_format"] == {"type": "json_schema", "json_schema": {"name": "facets", "schema": SCHEMA, "strict": True}}
    assert server.request_headers[0]["authorization"] == "Bearer sk-good"
    assert client.requests_sent == 2
    assert client.usage_summary()["roles"]["facets"]["input_tokens"] > 0


def test_openai_messages_are_sent_as_given(tmp_path):
    with FakeOpenAIServer(responder=lambda body: "helping with a recipe.") as server:
        (response,), _ = run_many(settings(f"openai:m@{server.url}/v1", tmp_path), [ask("cook?", system="sys")])
    assert response.text == "helping with a recipe."
    assert server.requests[0]["messages"] == [{"role": "system", "content": "sys"}, {"role": "user", "content": "cook?"}]


def test_anthropic_headers_and_tool_use(tmp_path):
    with FakeAnthropicServer(api_key="ak-good", responder=lambda body: "A recipe." if schema_of(body) is None else '{"summary": "s", "language": "fr"}') as server:
        (text, structured), _ = run_many(
            settings(f"anthropic:claude-haiku-4-5@{server.url}", tmp_path),
            [ask("cook?", system="sys"), ask("x", json_schema=SCHEMA)],
        )
    assert text.text == "A recipe."
    assert structured.parsed == {"summary": "s", "language": "fr"}
    # the two requests run concurrently, so they may arrive in either order
    first = next(r for r in server.requests if "tools" not in r)
    second = next(r for r in server.requests if "tools" in r)
    assert first["messages"] == [{"role": "user", "content": "cook?"}]
    assert first["system"] == [{"type": "text", "text": "sys", "cache_control": {"type": "ephemeral"}}] and first["max_tokens"] == 512
    assert second["tool_choice"] == {"type": "tool", "name": "answer"} and second["tools"][0]["input_schema"] == SCHEMA
    headers = server.request_headers[0]
    assert headers["x-api-key"] == "ak-good" and headers["anthropic-version"] == "2023-06-01"


def test_anthropic_base_url_from_environment(tmp_path, monkeypatch):
    with FakeAnthropicServer() as server:
        monkeypatch.setenv("ANTHROPIC_BASE_URL", server.url)
        (response,), _ = run_many(settings("anthropic:claude-haiku-4-5", tmp_path), [ask("hi")])
    assert response.text == "This is a fake answer." and server.request_count == 1


# -- transient faults are retried and nothing is lost ----------------------------------------------


def test_429_waits_for_retry_after(tmp_path):
    with FakeOpenAIServer() as server:
        server.fail_next(1, status=429, retry_after=1)
        start = time.monotonic()
        responses, client = run_many(settings(f"openai:m@{server.url}", tmp_path, max_concurrency=1), [ask(f"q{i}") for i in range(3)])
        elapsed = time.monotonic() - start
    assert elapsed >= 1.0
    assert all(not r.failed and r.text for r in responses)
    assert server.request_count == 4 and client.usage_summary()["roles"]["facets"]["retries"] == 1


@pytest.mark.parametrize("server_class,status", [(FakeOpenAIServer, 500), (FakeAnthropicServer, 529), (FakeOpenAIServer, 503)])
def test_server_errors_then_success(tmp_path, server_class, status):
    with server_class() as server:
        server.fail_next(2, status=status)
        spec = "openai:m" if server_class is FakeOpenAIServer else "anthropic:claude-haiku-4-5"
        responses, _ = run_many(settings(f"{spec}@{server.url}", tmp_path, max_concurrency=1), [ask("a"), ask("b")])
    assert [r.failed for r in responses] == [False, False] and server.request_count == 4


def test_dropped_connection_then_success(tmp_path):
    with FakeOpenAIServer() as server:
        server.drop_next(2)
        responses, _ = run_many(settings(f"openai:m@{server.url}", tmp_path), [ask("a"), ask("b")])
    assert all(r.text == "This is a fake answer." for r in responses) and server.request_count == 4


def test_malformed_body_then_success(tmp_path):
    with FakeAnthropicServer() as server:
        server.malformed_next(1)
        (response,), _ = run_many(settings(f"anthropic:claude-haiku-4-5@{server.url}", tmp_path), [ask("a")])
    assert response.text == "This is a fake answer." and server.request_count == 2


def test_timeout_then_success(tmp_path):
    with FakeOpenAIServer() as server:
        server.slow_next(1, delay=1.0)
        (response,), _ = run_many(settings(f"openai:m@{server.url}", tmp_path, timeout_s=0.2), [ask("a")])
    assert not response.failed and server.request_count == 2


def test_retries_exhausted_marks_item_failed(tmp_path):
    with FakeOpenAIServer() as server:
        server.fail_next(3, status=500)
        (response,), client = run_many(settings(f"openai:m@{server.url}", tmp_path, max_retries=2), [ask("a")])
    assert response.failed and "HTTP 500" in response.error
    assert client.usage_summary()["roles"]["facets"]["failed"] == 1


# -- fatal errors stop the run with one line --------------------------------------------------------


def test_rejected_key_is_fatal_at_once(tmp_path, monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-wrong")
    with FakeOpenAIServer(api_key="sk-good", latency=0.05) as server:
        with pytest.raises(LLMFatalError) as caught:
            run_many(settings(f"openai:m@{server.url}", tmp_path, max_concurrency=4), [ask(f"q{i}") for i in range(200)])
    assert str(caught.value) == "OPENAI_API_KEY was rejected (401)"
    assert server.request_count <= 8  # the others were cancelled, not sent


def test_anthropic_rejected_key(tmp_path, monkeypatch):
    monkeypatch.setenv("ANTHROPIC_API_KEY", "ak-wrong")
    with FakeAnthropicServer(api_key="ak-good") as server, pytest.raises(LLMFatalError, match=r"^ANTHROPIC_API_KEY was rejected \(401\)$"):
        run_many(settings(f"anthropic:claude-haiku-4-5@{server.url}", tmp_path), [ask("a")])


def test_unknown_model_is_fatal(tmp_path):
    with FakeOpenAIServer(models={"real-model"}) as server, pytest.raises(LLMFatalError, match="model 'nope' not found"):
        run_many(settings(f"openai:nope@{server.url}", tmp_path), [ask("a")])


def test_unreachable_server_is_fatal(tmp_path):
    with FakeOpenAIServer() as server:
        url = server.url
    with pytest.raises(LLMFatalError, match="cannot connect"):
        run_many(settings(f"openai:m@{url}", tmp_path, max_retries=1), [ask("a")])


def test_missing_key_for_public_api_is_a_config_error(tmp_path, monkeypatch):
    monkeypatch.delenv("OPENAI_API_KEY")
    with pytest.raises(ConfigError, match="OPENAI_API_KEY is not set"):
        build_client(settings("openai:gpt-4o-mini", tmp_path))


def test_role_without_backend_raises_config_error(tmp_path):
    with FakeOpenAIServer() as server:
        s = settings(f"openai:m@{server.url}", tmp_path, naming="none", auditor="none")
        with pytest.raises(ConfigError, match="llm.naming is 'none'"):
            run_many(s, [ask("a", role="naming")])
    client = build_client(LLMSettings(cache=False), progress=False)
    with pytest.raises(ConfigError):
        asyncio.run(client.complete(ask("a")))


# -- cache --------------------------------------------------------------------------------------------


def test_cache_shared_across_clients_makes_zero_requests(tmp_path):
    requests = [ask(f"question {i}", json_schema=SCHEMA if i % 2 else None, temperature=1.0) for i in range(10)]
    with FakeOpenAIServer() as server:
        s = settings(f"openai:m@{server.url}", tmp_path)
        first, _ = run_many(s, requests)
        second, client = run_many(s, requests)
    assert server.request_count == 10 and client.requests_sent == 0
    assert all(r.cached for r in second) and not any(r.cached for r in first)
    assert [(r.text, r.parsed) for r in first] == [(r.text, r.parsed) for r in second]
    assert client.usage_summary()["roles"]["facets"]["cached_calls"] == 10


def test_cache_holds_no_prompt_text(tmp_path):
    secret = "PLANTED-PROMPT-7f3a9c my card is 4111 1111 1111 1111"
    with FakeOpenAIServer() as server:
        run_many(settings(f"openai:m@{server.url}", tmp_path), [ask(secret, system=secret), ask(secret, json_schema=SCHEMA)])
    files = list((tmp_path / "cache").iterdir())
    assert files and all(b"PLANTED-PROMPT" not in f.read_bytes() for f in files)


def test_cache_off_sends_every_time(tmp_path):
    with FakeOpenAIServer() as server:
        s = settings(f"openai:m@{server.url}", tmp_path, cache=False)
        run_many(s, [ask("a")])
        run_many(s, [ask("a")])
    assert server.request_count == 2 and not (tmp_path / "cache").exists()


def test_cache_key_depends_on_model_and_temperature(tmp_path):
    with FakeOpenAIServer() as server:
        run_many(settings(f"openai:m1@{server.url}", tmp_path), [ask("a"), ask("a", temperature=0.9)])
        run_many(settings(f"openai:m2@{server.url}", tmp_path), [ask("a")])
    assert server.request_count == 3


def test_cache_survives_concurrent_writer_processes(tmp_path):
    import subprocess
    import sys

    script = (
        "import sys; from pathlib import Path; from convoscope.llm.cache import ResponseCache; from convoscope.llm.base import Usage\n"
        "c = ResponseCache(Path(sys.argv[1]))\n"
        "for i in range(300): c.put(f'{sys.argv[2]}-{i}', 'answer', {'i': i}, Usage(1, 2))\n"
        "if sys.argv[3] == 'close': c.close()\n"
    )
    # three writers at once; "c" dies without closing, as a killed run would
    procs = [subprocess.Popen([sys.executable, "-c", script, str(tmp_path), name, "kill" if name == "c" else "close"]) for name in "abc"]
    assert [p.wait(timeout=60) for p in procs] == [0, 0, 0]
    from convoscope.llm.cache import ResponseCache

    cache = ResponseCache(tmp_path)
    assert cache.get("b-299").parsed == {"i": 299} and cache.get("a-0").parsed == {"i": 0}
    # the killed writer kept what it had flushed (every FLUSH_EVERY answers) and lost only the rest, which a rerun asks again
    assert cache.get(f"c-{ResponseCache.FLUSH_EVERY - 1}") is not None and cache.get(f"c-{ResponseCache.FLUSH_EVERY}") is None
    assert cache._db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


# -- concurrency, budget, usage -------------------------------------------------------------------------


def test_concurrency_bound_is_respected(tmp_path):
    with FakeOpenAIServer(latency=0.05) as server:
        run_many(settings(f"openai:m@{server.url}", tmp_path, max_concurrency=4, cache=False), [ask(f"q{i}") for i in range(20)])
    assert server.max_in_flight == 4


def test_budget_cap_stops_before_crossing(tmp_path):
    # 100 USD per 1M tokens each way: one request (about 10 input + 1000 max output tokens) reserves about 0.1 USD.
    s = settings("openai:pricey@URL", tmp_path, max_cost_usd=0.35, prices={"pricey": (100.0, 100.0)}, max_concurrency=1)
    with FakeOpenAIServer() as server:
        s = s.model_copy(update={"facets": f"openai:pricey@{server.url}"})
        requests = [ask(f"question {i}", max_tokens=1000) for i in range(10)]

        async def go():
            client = build_client(s, progress=False)
            try:
                with pytest.raises(BudgetExceeded):
                    await client.complete_many(requests)
                return client.usage_summary()
            finally:
                await client.aclose()

        summary = asyncio.run(go())
        assert server.request_count == 3  # the 4th would have crossed 0.35 in the worst case
        assert summary["total"]["cost_usd"] <= 0.35
        # finished work is kept: a rerun with a higher cap gets the first three from the cache
        (s2 := s.model_copy(update={"max_cost_usd": 10.0}))
        responses, client = run_many(s2, requests)
    assert sum(r.cached for r in responses) == 3 and client.requests_sent == 7


def test_usage_and_cost_per_role(tmp_path):
    with FakeAnthropicServer() as server:
        s = settings(f"anthropic:claude-haiku-4-5@{server.url}", tmp_path, naming=f"anthropic:claude-sonnet-4-5@{server.url}", prices={"claude-sonnet-4-5": (3.0, 15.0)})
        _, client = run_many(s, [ask("a"), ask("b", role="naming"), ask("c", role="auditor"), ask("d", role="screener")])
    summary = client.usage_summary()
    assert set(summary["roles"]) == {"facets", "naming", "auditor", "screener"}
    facets = summary["roles"]["facets"]
    assert facets["calls"] == 1 and facets["cost_usd"] == pytest.approx((facets["input_tokens"] * 1 + facets["output_tokens"] * 5) / 1e6)
    assert summary["roles"]["naming"]["backend"].startswith("anthropic:claude-sonnet-4-5")
    assert summary["total"]["calls"] == 4 and summary["notes"] == []


def test_unknown_price_is_noted(tmp_path):
    with FakeOpenAIServer() as server:
        _, client = run_many(settings(f"openai:my-local-model@{server.url}", tmp_path), [ask("a")])
    summary = client.usage_summary()
    assert summary["total"]["cost_usd"] == 0 and "unknown price" in summary["notes"][0]


# -- structured output: re-ask with the validation error, then give up without raising ------------------


def test_schema_retry_feeds_back_the_error(tmp_path):
    answers = iter(['Here you go: {"summary": "s", "language": "de"}', '```json\n{"summary": "s", "language": "en"}\n```'])
    with FakeOpenAIServer(responder=lambda body: next(answers)) as server:
        (response,), client = run_many(settings(f"openai:m@{server.url}", tmp_path), [ask("q", json_schema=SCHEMA)])
    assert response.parsed == {"summary": "s", "language": "en"} and not response.failed
    retry = server.requests[1]["messages"]
    assert retry[-2] == {"role": "assistant", "content": 'Here you go: {"summary": "s", "language": "de"}'}
    assert "'de' is not one of ['en', 'fr']" in retry[-1]["content"] and "$.language" in retry[-1]["content"]
    assert client.usage_summary()["roles"]["facets"]["requests"] == 2


def test_answer_check_rejects_and_reasks(tmp_path):
    """A valid answer that fails the request's own check (e.g. echoed scaffolding) is re-asked with the check's feedback."""
    answers = iter(['{"summary": "The task is to summarise", "language": "en"}', '{"summary": "Debugging a pandas merge", "language": "en"}'])

    def no_scaffolding(value):
        return "do not describe the task; summarise the request" if value["summary"].startswith("The task") else None

    with FakeOpenAIServer(responder=lambda body: next(answers)) as server:
        request = replace(ask("q", json_schema=SCHEMA), answer_check=no_scaffolding)
        (response,), client = run_many(settings(f"openai:m@{server.url}", tmp_path), [request])
    assert response.parsed["summary"] == "Debugging a pandas merge" and not response.failed
    assert "do not describe the task" in server.requests[1]["messages"][-1]["content"]


def test_output_never_valid_marks_item_failed(tmp_path):
    with FakeAnthropicServer(responder=lambda body: "I cannot answer in JSON.") as server:
        responses, client = run_many(
            settings(f"anthropic:claude-haiku-4-5@{server.url}", tmp_path), [ask("q", json_schema=SCHEMA), ask("fine")]
        )
    failed, fine = responses
    assert failed.failed and failed.parsed is None and "no JSON" in failed.error and not fine.failed
    assert server.request_count == 4  # 3 attempts for the structured item + 1
    roles = client.usage_summary()["roles"]["facets"]
    assert roles["failed"] == 1 and roles["calls"] == 2
    with FakeAnthropicServer() as server2:  # a failed item is not cached: a rerun asks again
        run_many(settings(f"anthropic:claude-haiku-4-5@{server2.url}", tmp_path), [ask("q", json_schema=SCHEMA)])
    assert server2.request_count == 1


def test_client_works_across_event_loops(tmp_path):
    with FakeOpenAIServer() as server:
        client = build_client(settings(f"openai:m@{server.url}", tmp_path, cache=False), progress=False)
        first = asyncio.run(client.complete(ask("a")))
        second = asyncio.run(client.complete(ask("b")))
        asyncio.run(client.aclose())
    assert first.text == second.text == "This is a fake answer."


def test_no_prompt_text_in_logs(tmp_path, caplog):
    secret = "PLANTED-LOG-SECRET"
    caplog.set_level("DEBUG")
    with FakeOpenAIServer() as server:
        server.fail_next(1, status=500)
        server.drop_next(1)
        run_many(settings(f"openai:m@{server.url}", tmp_path), [ask(secret, json_schema=SCHEMA)])
    assert caplog.records and secret not in caplog.text
    assert json.dumps(server.requests).count(secret) == 3  # it was sent, three times, but never logged


def test_cache_opening_retries_while_another_process_switches_it_to_wal(tmp_path, monkeypatch):
    # SQLite does not wait (busy_timeout) for the lock that switching to WAL needs: a second process
    # creating the same cache at that moment got "database is locked" (seen once in CI).
    import sqlite3

    from convoscope import sqlite_wal

    real_connect = sqlite3.connect
    refusals = {"left": 3}

    class Busy:
        def __init__(self, db):
            self.db = db

        def execute(self, sql, *args):
            if sql == "PRAGMA journal_mode=WAL" and refusals["left"]:
                refusals["left"] -= 1
                raise sqlite3.OperationalError("database is locked")
            return self.db.execute(sql, *args)

        def __getattr__(self, name):
            return getattr(self.db, name)

    monkeypatch.setattr(sqlite_wal.sqlite3, "connect", lambda *a, **k: Busy(real_connect(*a, **k)))
    db = sqlite_wal.connect_wal(tmp_path / "c.sqlite", timeout=5)
    assert refusals["left"] == 0 and db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    refusals["left"] = 10**6  # locked for good: the error surfaces after the timeout, not forever
    with pytest.raises(sqlite3.OperationalError, match="locked"):
        sqlite_wal.connect_wal(tmp_path / "d.sqlite", timeout=0.2)


# -- prompt caching ------------------------------------------------------------------------------------


LONG_SYSTEM = "Summarise the conversation for a privacy-preserving analysis. " * 200  # ~3,000 tokens of static prefix


def test_anthropic_prompt_caching_breakpoint_usage_and_price(tmp_path):
    requests = [ask(f"conversation {i}", system=LONG_SYSTEM, json_schema=SCHEMA) for i in range(5)]
    with FakeAnthropicServer() as server:
        s = settings(f"anthropic:claude-3-5-haiku-20241022@{server.url}", tmp_path, cache=False, max_concurrency=1)
        _, client = run_many(s, requests)
        _, short_client = run_many(s, [ask(f"conversation {i}", system="Be brief.") for i in range(2)])
    assert server.requests[0]["system"] == [{"type": "text", "text": LONG_SYSTEM, "cache_control": {"type": "ephemeral"}}]
    assert server.requests[-1]["system"][0]["cache_control"] == {"type": "ephemeral"}  # sent, but far below the 2,048-token minimum
    total = client.usage_summary()["total"]
    prefix = total["cache_write_tokens"]
    assert prefix > 2048 and total["cache_read_tokens"] == 4 * prefix  # written once, read by the next four
    assert total["input_tokens"] > 5 * prefix  # input_tokens counts every prompt token, cached or not
    fresh = total["input_tokens"] - 5 * prefix
    expected = (fresh * 0.80 + prefix * 1.00 + 4 * prefix * 0.08 + total["output_tokens"] * 4.00) / 1e6
    assert total["cost_usd"] == pytest.approx(expected)
    assert client.usage_summary()["tasks"]["facets"]["cache_read_tokens"] == 4 * prefix
    assert short_client.usage_summary()["total"]["cache_read_tokens"] == 0


def test_openai_cached_tokens_are_read_and_priced(tmp_path):
    requests = [ask(f"conversation {i}", system=LONG_SYSTEM) for i in range(3)]
    with FakeOpenAIServer() as server:
        s = settings(f"openai:gpt-4o-mini@{server.url}", tmp_path, cache=False, max_concurrency=1)
        _, client = run_many(s, requests)
    total = client.usage_summary()["total"]
    assert total["cache_write_tokens"] == 0 and total["cache_read_tokens"] >= 2 * 1024 and total["cache_read_tokens"] % 128 == 0
    fresh = total["input_tokens"] - total["cache_read_tokens"]
    assert total["cost_usd"] == pytest.approx((fresh * 0.15 + total["cache_read_tokens"] * 0.075 + total["output_tokens"] * 0.60) / 1e6)


def test_cost_cap_reserves_cache_writes_at_their_price(tmp_path):
    """A Claude cache write costs 1.25x input: reservations assume it, so the cap holds with caching on."""
    cap = 0.02  # each request: ~3,000 prefix tokens, at most $0.0034 if all written to the cache

    async def go(s):
        client = build_client(s, progress=False)
        try:
            with pytest.raises(BudgetExceeded):
                await client.complete_many([ask(f"conversation {i}", system=LONG_SYSTEM + str(i), max_tokens=100) for i in range(40)])
            return client.usage_summary()["total"]
        finally:
            await client.aclose()

    with FakeAnthropicServer(cache_min_tokens=0) as server:  # every prefix differs: every request writes the cache
        total = asyncio.run(go(settings(f"anthropic:claude-3-5-haiku@{server.url}", tmp_path, cache=False, max_concurrency=4, max_cost_usd=cap)))
    assert 0 < server.request_count < 40 and total["cache_write_tokens"] > 0
    assert total["cost_usd"] <= cap


# -- adaptive concurrency (AIMD) -------------------------------------------------------------------------


def test_fewer_in_flight_after_a_rate_limit_and_more_again_after_successes(tmp_path):
    """A server that allows 8 requests at once: the client starts at 64 in flight, halves after the
    429s, and every request still succeeds; a fixed 64 would draw far more 429s and exhaust retries."""
    requests = [ask(f"question {i}") for i in range(300)]
    with FakeOpenAIServer(latency=0.03) as server:
        server.concurrency_limit = 8
        s = settings(f"openai:m@{server.url}", tmp_path, cache=False, max_concurrency=64, retry_initial_s=0.05, retry_max_s=0.2)
        responses, client = run_many(s, requests)
    usage = client.usage_summary()
    assert not any(r.failed for r in responses)
    assert usage["rate_limit_cuts"] >= 2 and usage["in_flight_limit_now"] < 64
    assert server.rate_limited < len(requests) // 2  # the limit settled near the server's, not 64
    assert usage["total"]["retries"] == server.rate_limited


def test_adaptive_limit_grows_back_additively():
    from convoscope.llm.limits import AdaptiveLimit

    async def go():
        limit = AdaptiveLimit(16)
        sent_together = [await limit.acquire() for _ in range(3)]
        for generation in sent_together:  # three requests of one window hit the limit: one cut
            limit.rate_limited(generation)
            limit.release()
        assert int(limit.limit) == 8
        limit.rate_limited(await limit.acquire())  # sent after the cut: cut again
        limit.release()
        assert int(limit.limit) == 4 and limit.cuts == 2
        for _ in range(4):  # one more slot after `limit` successes
            limit.succeeded()
        assert int(limit.limit) == 5
        for _ in range(500):
            limit.succeeded()
        assert limit.limit == 16
        # the bound holds: 20 acquirers, 16 slots; a release hands its slot to the next waiter
        await asyncio.gather(*(limit.acquire() for _ in range(16)))
        waiter = asyncio.ensure_future(limit.acquire())
        await asyncio.sleep(0)
        assert not waiter.done() and limit.in_flight == 16
        limit.release()
        await asyncio.sleep(0)
        assert waiter.done() and limit.in_flight == 16
        cancelled = asyncio.ensure_future(limit.acquire())
        await asyncio.sleep(0)
        cancelled.cancel()
        await asyncio.gather(cancelled, return_exceptions=True)
        limit.release()
        assert limit.in_flight == 15  # the cancelled waiter took no slot

    asyncio.run(go())
