"""In-process vLLM (offline batch inference on a local GPU).

vLLM is fast only when given many prompts at once, while the client sends requests one by one
(bounded by max_concurrency). A micro-batcher collects the requests that arrive within a few
milliseconds and runs them as one `LLM.chat` call in a worker thread. Structured output uses vLLM's
guided JSON decoding.
Set max_concurrency to the batch size you want (e.g. 256).
"""

from __future__ import annotations

import asyncio
from typing import Any

from convoscope.errors import ConfigError, LLMFatalError
from convoscope.llm.backends import Completion
from convoscope.llm.base import LLMRequest, Usage
from convoscope.llm.settings import BackendSpec, LLMSettings

_GATHER_S = 0.02  # how long the first request of a batch waits for others to join


def _sampling_params(request: LLMRequest) -> Any:
    from vllm import SamplingParams

    kwargs: dict[str, Any] = {"temperature": request.temperature, "max_tokens": request.max_tokens}
    if request.json_schema is not None:
        try:  # vLLM >= 0.10.2
            from vllm.sampling_params import StructuredOutputsParams

            kwargs["structured_outputs"] = StructuredOutputsParams(json=request.json_schema)
        except ImportError:  # vLLM 0.6.3 .. 0.10
            from vllm.sampling_params import GuidedDecodingParams

            kwargs["guided_decoding"] = GuidedDecodingParams(json=request.json_schema)
    return SamplingParams(**kwargs)


def _conversation(request: LLMRequest) -> list[dict[str, str]]:
    messages = [{"role": "system", "content": request.system}] if request.system else []
    messages += [{"role": m.role, "content": m.content} for m in request.messages]
    return messages


class VLLMBackend:
    local = True

    def __init__(self, spec: BackendSpec, settings: LLMSettings):
        try:
            from vllm import LLM
        except ImportError:
            raise ConfigError("vllm is not installed: pip install 'convoscope[vllm]' (needs a GPU)") from None
        self.spec = spec
        self._llm = LLM(model=spec.model, max_model_len=settings.local_context_tokens)
        self._pending: list[tuple[LLMRequest, asyncio.Future[Completion]]] = []
        self._worker: asyncio.Task[None] | None = None

    async def complete(self, request: LLMRequest) -> Completion:
        future: asyncio.Future[Completion] = asyncio.get_running_loop().create_future()
        self._pending.append((request, future))
        if self._worker is None or self._worker.done():
            self._worker = asyncio.create_task(self._drain())
        return await future

    async def _drain(self) -> None:
        while self._pending:
            await asyncio.sleep(_GATHER_S)
            batch, self._pending = self._pending, []
            try:
                completions = await asyncio.to_thread(self._generate, [r for r, _ in batch])
            except Exception as exc:  # an engine failure (out of memory, bad model) ends the run
                error = LLMFatalError(f"vllm failed: {type(exc).__name__}: {str(exc).splitlines()[0][:200] if str(exc) else ''}")
                for _, future in batch:
                    if not future.done():
                        future.set_exception(error)
                continue
            for (_, future), completion in zip(batch, completions):
                if not future.done():
                    future.set_result(completion)

    def _generate(self, requests: list[LLMRequest]) -> list[Completion]:
        outputs = self._llm.chat(
            [_conversation(r) for r in requests],
            sampling_params=[_sampling_params(r) for r in requests],
            use_tqdm=False,
        )
        completions = []
        for output in outputs:
            text = output.outputs[0].text
            usage = Usage(len(output.prompt_token_ids or []), len(output.outputs[0].token_ids))
            completions.append(Completion(text, usage))
        return completions

    async def aclose(self) -> None:
        return None
