"""In-process llama.cpp (llama-cpp-python) for a local GGUF file.

JSON is constrained by a grammar built from the schema (`response_format={"type": "json_object",
"schema": ...}`). llama.cpp calls block and the model is not re-entrant, so they run in a worker
thread, one at a time; the event loop stays free for the progress bar and other roles.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from convoscope.errors import ConfigError
from convoscope.llm.backends import Completion
from convoscope.llm.backends.openai_compat import prefill_instruction, with_prefill
from convoscope.llm.base import LLMRequest, Usage
from convoscope.llm.settings import BackendSpec, LLMSettings


class LlamaCppBackend:
    local = True

    def __init__(self, spec: BackendSpec, settings: LLMSettings):
        try:
            from llama_cpp import Llama
        except ImportError:
            raise ConfigError("llama-cpp-python is not installed: pip install 'convoscope[llamacpp]'") from None
        path = Path(spec.model).expanduser()
        if not path.is_file():
            raise ConfigError(f"GGUF model file not found: {path}")
        self.spec = spec
        self._llama = Llama(model_path=str(path), n_ctx=settings.local_context_tokens, verbose=False)
        self._lock = asyncio.Lock()

    def chat_arguments(self, request: LLMRequest) -> dict[str, Any]:
        messages: list[dict[str, str]] = [{"role": "system", "content": request.system}] if request.system else []
        messages += [{"role": m.role, "content": m.content} for m in request.messages]
        if request.prefill and request.json_schema is None:
            messages[-1] = {**messages[-1], "content": messages[-1]["content"] + prefill_instruction(request.prefill)}
        arguments: dict[str, Any] = {"messages": messages, "temperature": request.temperature, "max_tokens": request.max_tokens}
        if request.json_schema is not None:
            arguments["response_format"] = {"type": "json_object", "schema": request.json_schema}
        return arguments

    async def complete(self, request: LLMRequest) -> Completion:
        arguments = self.chat_arguments(request)
        async with self._lock:
            result = await asyncio.to_thread(self._llama.create_chat_completion, **arguments)
        text = result["choices"][0]["message"]["content"] or ""
        usage = Usage(result["usage"]["prompt_tokens"], result["usage"]["completion_tokens"])
        return Completion(text if request.json_schema is not None else with_prefill(text, request.prefill), usage)

    async def aclose(self) -> None:
        close = getattr(self._llama, "close", None)  # only newer llama-cpp-python versions have it
        if close is not None:
            close()
