"""`--llm vllm:MODEL --engine ray`: screening and facets through `ray.data.llm` with vLLM engines on GPU workers.

UNTESTED ON A GPU (none was available where this was written): it is built against Ray's documented API
(`ray.data.llm.vLLMEngineProcessorConfig` and `build_processor` / `build_llm_processor`, docs.ray.io "Working with LLMs" and
"Batch Inference with Structural Outputs"), and the tests check the configuration and the rows it
produces and reads back, not a model. The stage's own work runs in the driver unchanged; only its LLM
requests go to the processor, as one Ray Data pipeline per batch of requests. Answers are constrained to
the request's JSON schema by vLLM's structured outputs, then parsed and checked like any other backend's;
there is no response cache and no re-ask on this path (a model on your own GPUs costs no money, and
constrained decoding cannot miss the schema), and an answer that fails its check is a failed item.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from convoscope.config import Config
from convoscope.context import RunContext
from convoscope.llm.base import LLMRequest, LLMResponse, Usage
from convoscope.llm.parse import parse_structured
from convoscope.llm.settings import parse_spec

VLLM_BATCH_SIZE = 64  # requests per batch sent to one engine replica (Ray's default is 32)


def uses_vllm(config: Config) -> bool:
    spec = parse_spec(config.llm.facets) if config.llm_mode else None
    return spec is not None and spec.kind == "vllm"


def processor_config_kwargs(config: Config, gpu_workers: int) -> dict[str, Any]:
    """Keyword arguments of `ray.data.llm.vLLMEngineProcessorConfig` for the facets model: one engine
    replica per GPU worker, the context window of `llm.local_context_tokens`, JSON-schema decoding by xgrammar."""
    spec = parse_spec(config.llm.facets)
    assert spec is not None and spec.kind == "vllm", "the facets backend is not vllm:MODEL"
    return {
        "model_source": spec.model,
        "engine_kwargs": {"max_model_len": config.llm.local_context_tokens, "structured_outputs_config": {"backend": "xgrammar"}},
        "concurrency": gpu_workers,
        "batch_size": VLLM_BATCH_SIZE,
        # chat template, tokenizer and detokenizer stages: on by default (flags renamed across Ray versions)
    }


def request_row(index: int, request: LLMRequest) -> dict[str, Any]:
    """One request as a row for the processor: OpenAI-style messages and per-row sampling parameters."""
    messages = ([{"role": "system", "content": request.system}] if request.system else []) + [
        {"role": m.role, "content": m.content} for m in request.messages]
    sampling: dict[str, Any] = {"temperature": request.temperature, "max_tokens": request.max_tokens}
    if request.json_schema is not None:
        sampling["structured_outputs"] = {"json": request.json_schema}
    return {"index": index, "messages": messages, "sampling_params": sampling}


def response_from_row(row: dict[str, Any], request: LLMRequest) -> LLMResponse:
    """The processor's output row (`generated_text`, token counts) as our response, parsed and checked."""
    text = str(row.get("generated_text") or "")
    usage = Usage(int(row.get("num_input_tokens") or 0), int(row.get("num_generated_tokens") or 0))
    if request.json_schema is None:
        return LLMResponse(text, usage=usage)
    result = parse_structured(text, request.json_schema)
    if result.ok and request.answer_check is not None and (problem := request.answer_check(result.value)) is not None:
        return LLMResponse(text, usage=usage, failed=True, error=f"answer rejected by the {request.task or request.role} check: {problem}")
    if not result.ok:
        return LLMResponse(text, usage=usage, failed=True, error=result.error)
    return LLMResponse(text, result.value, usage)


def build_processor(config: Config, gpu_workers: int) -> Any:
    """The `ray.data.llm` processor (needs `pip install "ray[data,llm]" vllm` and GPU workers)."""
    import ray.data.llm as ray_llm

    # `build_processor` in recent Ray, `build_llm_processor` before
    build = getattr(ray_llm, "build_processor", None) or getattr(ray_llm, "build_llm_processor")
    return build(ray_llm.vLLMEngineProcessorConfig(**processor_config_kwargs(config, gpu_workers)),
                 postprocess=lambda row: {k: row.get(k) for k in ("index", "generated_text", "num_input_tokens", "num_generated_tokens")})


@dataclass
class VLLMContext(RunContext):
    """A RunContext whose LLM requests go through a `ray.data.llm` processor instead of our client."""

    processor: Any = None

    @classmethod
    def of(cls, ctx: RunContext, processor: Any) -> "VLLMContext":
        return cls(**{f.name: getattr(ctx, f.name) for f in dataclasses.fields(RunContext)}, processor=processor)

    def complete_many(self, requests: list, description: str = "", *, show_progress: bool = True) -> list:
        import ray

        rows = self.processor(ray.data.from_items([request_row(i, r) for i, r in enumerate(requests)])).take_all()
        by_index = {int(row["index"]): row for row in rows}
        return [response_from_row(by_index.get(i, {}), r) for i, r in enumerate(requests)]
