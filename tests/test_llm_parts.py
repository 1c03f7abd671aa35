"""The LLM layer's parts: spec strings, the tolerant parser, limits, prices, estimates, and the
in-process backends (skipped unless their engines are installed)."""

from __future__ import annotations

import asyncio
import importlib.util
import os
import time
from email.utils import formatdate

import pytest

from convoscope.errors import ConfigError
from convoscope.llm import CallPlan, ChatMessage, LLMRequest, LLMSettings, Usage, build_client, estimate
from convoscope.llm.limits import TokenBucket, backoff_delay, parse_retry_after
from convoscope.llm.parse import extract_json, parse_structured
from convoscope.llm.settings import BackendSpec, parse_spec
from convoscope.llm.usage import ModelPrice, PriceTable
from convoscope.model import Conversation

SCHEMA = {"type": "object", "properties": {"name": {"type": "string"}, "score": {"type": "integer", "minimum": 1, "maximum": 5}}, "required": ["name", "score"]}


# -- spec strings and settings ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "spec,expected",
    [
        ("anthropic:claude-haiku-4-5", BackendSpec("anthropic", "claude-haiku-4-5")),
        ("anthropic:claude-haiku-4-5@http://127.0.0.1:9/", BackendSpec("anthropic", "claude-haiku-4-5", "http://127.0.0.1:9")),
        ("openai:llama3.1:8b@http://localhost:11434/v1", BackendSpec("openai", "llama3.1:8b", "http://localhost:11434/v1")),
        ("openai:gpt-4o-mini", BackendSpec("openai", "gpt-4o-mini")),
        ("llamacpp:/models/q.gguf", BackendSpec("llamacpp", "/models/q.gguf")),
        ("vllm:Qwen/Qwen2.5-7B-Instruct", BackendSpec("vllm", "Qwen/Qwen2.5-7B-Instruct")),
        ("none", None),
    ],
)
def test_parse_spec(spec, expected):
    assert parse_spec(spec) == expected


@pytest.mark.parametrize("spec", ["gpt-4o", "foo:bar", "openai:", "llamacpp:/m.gguf@http://x"])
def test_bad_specs_are_config_errors(spec):
    with pytest.raises(ConfigError):
        parse_spec(spec)


def test_role_fallbacks_and_enabled():
    s = LLMSettings(facets="openai:a", naming="openai:b")
    assert (s.spec_for("screener"), s.spec_for("naming"), s.spec_for("auditor")) == ("openai:a", "openai:b", "openai:b")
    assert s.enabled and not LLMSettings().enabled
    assert all(field.description for field in LLMSettings.model_fields.values())


def test_cache_dir_defaults(monkeypatch, tmp_path):
    monkeypatch.delenv("CONVOSCOPE_CACHE_DIR", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert LLMSettings().resolved_cache_dir() == tmp_path / "convoscope"
    monkeypatch.setenv("CONVOSCOPE_CACHE_DIR", str(tmp_path / "x"))
    assert LLMSettings().resolved_cache_dir() == tmp_path / "x"


# -- the tolerant parser -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text",
    [
        '{"name": "a", "score": 3}',
        '```json\n{"name": "a", "score": 3}\n```',
        '```\n{"name": "a", "score": 3}\n```',
        '<json>{"name": "a", "score": 3}</json> done',
        'Sure! Here it is: {"name": "a", "score": 3}. Anything else?',
        'Not this one: {"name": broken} but this: {"name": "a", "score": 3}',
    ],
)
def test_tolerant_parser(text):
    assert parse_structured(text, SCHEMA).value == {"name": "a", "score": 3}


def test_parser_reports_schema_errors_without_quoting_the_answer():
    result = parse_structured('{"name": "Jane Doe", "score": 9}', SCHEMA)
    assert not result.ok and "$.score" in result.feedback and "9 is greater than the maximum of 5" in result.feedback
    assert "Jane" not in result.error and "maximum" in result.error


def test_parser_without_json():
    assert not parse_structured("I refuse.", SCHEMA).ok
    with pytest.raises(ValueError):
        extract_json("no braces here")


# -- limits --------------------------------------------------------------------------------------------


def test_retry_after_seconds_and_http_date():
    assert parse_retry_after("2") == 2.0
    assert 8 <= parse_retry_after(formatdate(time.time() + 10, usegmt=True)) <= 10
    assert parse_retry_after("soon") is None and parse_retry_after(None) is None


def test_backoff_honours_retry_after_and_grows():
    assert backoff_delay(1, initial=0.1, maximum=5, retry_after=2.0) >= 2.0
    assert all(backoff_delay(4, initial=1, maximum=5, retry_after=None) <= 5 for _ in range(50))


def test_token_bucket_paces_requests():
    async def go():
        bucket = TokenBucket(per_minute=600)  # 10 a second, burst of 100
        start = time.monotonic()
        for _ in range(110):
            await bucket.acquire()
        return time.monotonic() - start

    assert 0.9 <= asyncio.run(go()) < 2.0


# -- prices and estimates ----------------------------------------------------------------------------------


def test_price_table_prefix_match_and_overrides():
    prices = PriceTable({"my-model": (1.0, 2.0), "my-cached-model": (1.0, 2.0, 0.3, 1.1)})
    haiku = prices.lookup("claude-3-5-haiku-20241022")
    assert (haiku.input, haiku.output) == (0.80, 4.00)
    assert (prices.lookup("gpt-4o-mini-2024-07-18").input, prices.lookup("gpt-4o-mini-2024-07-18").output) == (0.15, 0.60)
    assert prices.cost("my-model", 1_000_000, 500_000) == 2.0
    assert prices.lookup("mystery") is None and prices.cost("mystery", 10, 10) == 0
    assert prices.lookup("my-cached-model") == ModelPrice(1.0, 2.0, 0.3, 1.1)


def test_prices_of_cached_tokens_and_batches():
    prices = PriceTable({})
    # Claude 3.5 Haiku: $0.80/M in, $4/M out; a cache write 1.25x the input price, a read 0.1x
    usage = Usage(input_tokens=1_000_000, output_tokens=100_000, cache_read_tokens=600_000, cache_write_tokens=200_000)
    live = 0.2 * 0.80 + 0.6 * 0.08 + 0.2 * 1.00 + 0.1 * 4.00
    assert prices.cost_of("claude-3-5-haiku-latest", usage) == pytest.approx(live)
    assert prices.cost_of("claude-3-5-haiku-latest", usage, batch=True) == pytest.approx(live / 2)
    # OpenAI: cached input at the model's discount (gpt-4o: half, gpt-4.1: a quarter), no write surcharge
    read = Usage(input_tokens=1_000_000, output_tokens=0, cache_read_tokens=1_000_000)
    assert prices.cost_of("gpt-4o-2024-08-06", read) == pytest.approx(1.25)
    assert prices.cost_of("gpt-4.1-mini", read) == pytest.approx(0.10)
    assert prices.cost_of("gpt-4o", Usage(1_000_000, 0, 0, 1_000_000)) == pytest.approx(2.50)
    # the reservation for --max-cost prices every input token as a cache write, the dearer case for Claude
    assert prices.worst_case("claude-3-5-haiku", 1_000_000, 100_000) == pytest.approx(1.00 + 0.40)
    assert prices.worst_case("claude-3-5-haiku", 1_000_000, 100_000, batch=True) == pytest.approx(0.70)
    assert prices.cost_of(None, usage) == 0.0  # local backends


def _conversations(n: int, words: int = 100) -> list[Conversation]:
    return [Conversation(id=str(i), messages=[{"role": "user", "content": "word " * words}]) for i in range(n)]


def test_estimate_uses_the_pipelines_level_rule():
    """`estimate` prices the levels the hierarchy stage will build (it once assumed none for 1,000
    conversations, where the pipeline made 12 hierarchy calls)."""
    from convoscope.config import ClusterSettings, HierarchySettings
    from convoscope.hierarchy_levels import choose_k, level_sizes
    from convoscope.llm.estimate import _base_clusters, _level_sizes

    for n, per_cluster, levels, top in ((1000, 100, None, None), (100_000, 100, None, None), (5000, 50, 4, 8), (30, 100, None, None)):
        plan = CallPlan(conversations_per_cluster=per_cluster, levels=levels, top_clusters=top)
        base = choose_k(n, ClusterSettings(conversations_per_cluster=per_cluster))
        assert _base_clusters(n, plan) == base
        assert _level_sizes(base, plan) == level_sizes(base, HierarchySettings(levels=levels, top_clusters=top))
    result = estimate(_conversations(1000), LLMSettings(facets="anthropic:claude-haiku-4-5"), CallPlan())
    assert result["stages"]["hierarchy"]["calls"] > 0


# -- in-process backends --------------------------------------------------------------------------------------


def test_missing_engine_or_model_file_is_a_config_error():
    with pytest.raises(ConfigError):  # llama-cpp-python missing, or the file missing
        build_client(LLMSettings(facets="llamacpp:/nowhere/model.gguf", cache=False))
    if importlib.util.find_spec("vllm") is None:
        with pytest.raises(ConfigError, match="vllm is not installed"):
            build_client(LLMSettings(facets="vllm:some/model", cache=False))


@pytest.mark.slow
def test_llamacpp_backend_answers_with_schema_valid_json(tmp_path):
    pytest.importorskip("llama_cpp")
    gguf = os.environ.get("CONVOSCOPE_TEST_GGUF")
    if not gguf:
        pytest.skip("set CONVOSCOPE_TEST_GGUF to a GGUF file to run this test")
    client = build_client(LLMSettings(facets=f"llamacpp:{gguf}", cache_dir=tmp_path, local_context_tokens=2048), progress=False)
    schema = {"type": "object", "properties": {"topic": {"type": "string"}}, "required": ["topic"]}
    requests = [
        LLMRequest(messages=(ChatMessage("user", "What is this about: 'how do I bake bread?'"),), json_schema=schema, max_tokens=64),
        LLMRequest(messages=(ChatMessage("user", "Say hello."),), max_tokens=16),
    ]

    async def go():
        try:
            return await client.complete_many(requests)
        finally:
            await client.aclose()

    structured, free_text = asyncio.run(go())
    assert not structured.failed and isinstance(structured.parsed["topic"], str)
    assert free_text.text and structured.usage.input_tokens > 0


@pytest.mark.slow
def test_vllm_backend(tmp_path):
    pytest.importorskip("vllm")
    model = os.environ.get("CONVOSCOPE_TEST_VLLM_MODEL")
    if not model:
        pytest.skip("set CONVOSCOPE_TEST_VLLM_MODEL to a local model to run this test (needs a GPU)")
    client = build_client(LLMSettings(facets=f"vllm:{model}", cache=False, max_concurrency=64), progress=False)
    schema = {"type": "object", "properties": {"topic": {"type": "string"}}, "required": ["topic"]}
    requests = [LLMRequest(messages=(ChatMessage("user", f"Topic of question {i}: bread?"),), json_schema=schema, max_tokens=64) for i in range(32)]
    responses = asyncio.run(client.complete_many(requests))
    assert all(not r.failed for r in responses)
