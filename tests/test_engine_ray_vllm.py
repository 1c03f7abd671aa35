"""`--llm vllm:MODEL --engine ray`: the ray.data.llm configuration and rows it produces (no GPU here: the
processor itself is untested, docs/scale.md says so)."""

from __future__ import annotations

import json

import pytest

from convoscope.config import load_config
from convoscope.engines.ray_vllm import VLLMContext, processor_config_kwargs, request_row, response_from_row, uses_vllm
from convoscope.llm.base import ChatMessage, LLMRequest

SCHEMA = {"type": "object", "properties": {"answer": {"type": "string", "enum": ["yes", "no"]}}, "required": ["answer"], "additionalProperties": False}


def test_the_processor_config_serves_the_facets_model_with_json_schema_decoding():
    config = load_config(None, {"llm.facets": "vllm:Qwen/Qwen2.5-7B-Instruct", "llm.local_context_tokens": 16384, "engine.kind": "ray"})
    assert uses_vllm(config) and not uses_vllm(load_config(None, {"llm.facets": "openai:gpt-4o-mini"})) and not uses_vllm(load_config())
    kwargs = processor_config_kwargs(config, gpu_workers=4)
    assert kwargs["model_source"] == "Qwen/Qwen2.5-7B-Instruct"
    assert kwargs["concurrency"] == 4 and kwargs["batch_size"] > 0
    assert kwargs["engine_kwargs"]["max_model_len"] == 16384
    assert kwargs["engine_kwargs"]["structured_outputs_config"] == {"backend": "xgrammar"}


def test_the_installed_ray_accepts_the_config():
    llm = pytest.importorskip("ray.data.llm")  # the config class needs no GPU and no vLLM to be built
    config = load_config(None, {"llm.facets": "vllm:Qwen/Qwen2.5-7B-Instruct"})
    built = llm.vLLMEngineProcessorConfig(**processor_config_kwargs(config, gpu_workers=2))
    assert built.model_source == "Qwen/Qwen2.5-7B-Instruct" and built.concurrency == 2
    assert callable(getattr(llm, "build_processor", None) or getattr(llm, "build_llm_processor", None))


def test_a_request_becomes_chat_messages_with_its_schema_and_comes_back_parsed():
    request = LLMRequest(messages=(ChatMessage("user", "Is this about cooking?"),), system="Answer in JSON.", temperature=0.0, max_tokens=20,
                         json_schema=SCHEMA, role="screener", task="screen")
    row = request_row(7, request)
    assert row["index"] == 7
    assert row["messages"] == [{"role": "system", "content": "Answer in JSON."}, {"role": "user", "content": "Is this about cooking?"}]
    assert row["sampling_params"] == {"temperature": 0.0, "max_tokens": 20, "structured_outputs": {"json": SCHEMA}}
    json.dumps(row)  # plain data: it travels as a Ray Data row
    ok = response_from_row({"index": 7, "generated_text": '{"answer": "yes"}', "num_input_tokens": 31, "num_generated_tokens": 5}, request)
    assert ok.parsed == {"answer": "yes"} and not ok.failed and (ok.usage.input_tokens, ok.usage.output_tokens) == (31, 5)
    bad = response_from_row({"index": 7, "generated_text": '{"answer": "maybe"}'}, request)
    assert bad.failed and bad.parsed is None
    missing = response_from_row({}, request)  # a row the processor did not return: a failed item, not a crash
    assert missing.failed


def test_the_stage_requests_go_through_the_processor_in_order(tmp_path, monkeypatch):
    pytest.importorskip("ray")
    from convoscope.context import RunContext
    from convoscope.store import RunStore

    class FakeDataset:
        def __init__(self, rows):
            self.rows = rows

        def take_all(self):
            return list(reversed(self.rows))  # a processor does not keep order: rows are matched by index

    class FakeProcessor:
        def __call__(self, ds):
            return FakeDataset([{"index": r["index"], "generated_text": json.dumps({"answer": "yes" if "cook" in r["messages"][-1]["content"] else "no"})}
                                for r in ds.take_all()])

    monkeypatch.setattr("ray.data.from_items", FakeDataset)  # no Ray cluster needed for the rows themselves
    ctx = VLLMContext.of(RunContext(config=load_config(), store=RunStore(tmp_path / "run", create=True), input_path=tmp_path), FakeProcessor())
    requests = [LLMRequest(messages=(ChatMessage("user", text),), json_schema=SCHEMA) for text in ("cook pasta", "file taxes", "cook rice")]
    answers = [r.parsed["answer"] for r in ctx.complete_many(requests)]
    assert answers == ["yes", "no", "yes"]
