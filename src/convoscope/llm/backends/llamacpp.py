"""In-process llama.cpp (llama-cpp-python) for a local GGUF file.

JSON is constrained by a grammar built from the schema (`response_format={"type": "json_object",
"schema": ...}`). llama.cpp calls block and the model is not re-entrant, so they run in a worker
thread, one at a time; the event loop stays free for the progress bar and other roles.

The model runs on every core this process may use (`os.sched_getaffinity`; llama-cpp-python's own
default is half the machine's cores). A prompt longer than the context window would make llama.cpp
raise ValueError and stop the run: the longest user message (the conversation) is cut in the middle
with the model's own tokenizer to fit, the same head-and-tail rule as conversation_format, and an
item that still does not fit fails alone.
"""

from __future__ import annotations

import asyncio
import logging
import os
from pathlib import Path
from typing import Any

from convoscope.errors import ConfigError
from convoscope.llm.backends import Completion
from convoscope.llm.base import LLMRequest, Usage
from convoscope.llm.settings import BackendSpec, LLMSettings

log = logging.getLogger("convoscope.llm")

# Tokens the chat template adds around each message (role markers, separators), plus a margin: llama.cpp
# formats the messages itself, so the prompt is counted per message and these allowances are added.
TEMPLATE_TOKENS_PER_MESSAGE = 8
TEMPLATE_MARGIN_TOKENS = 32
OMITTED = "\n\n[... {n} tokens omitted ...]\n\n"


def usable_cores() -> int:
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # no sched_getaffinity on macOS and Windows
        return max(1, os.cpu_count() or 1)


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
        self.n_threads = usable_cores()
        self.n_ctx = settings.local_context_tokens
        self._llama = Llama(model_path=str(path), n_ctx=self.n_ctx, n_threads=self.n_threads, n_threads_batch=self.n_threads, verbose=False)
        self._lock = asyncio.Lock()

    def count_tokens(self, text: str) -> int:
        return len(self._llama.tokenize(text.encode("utf-8"), add_bos=False, special=False))

    def fit_messages(self, messages: list[dict[str, str]], max_tokens: int) -> list[dict[str, str]]:
        """The messages cut to leave `max_tokens` for the answer: the longest user message keeps the first
        two thirds and the last third of what fits, with a marker in between. Unchanged when they fit."""
        budget = self.n_ctx - max_tokens - TEMPLATE_MARGIN_TOKENS - TEMPLATE_TOKENS_PER_MESSAGE * len(messages)
        counts = [self.count_tokens(m["content"]) for m in messages]
        excess = sum(counts) - budget
        if excess <= 0:
            return messages
        users = [i for i, m in enumerate(messages) if m["role"] == "user"]
        if not users:
            return messages
        longest = max(users, key=lambda i: counts[i])
        tokens = self._llama.tokenize(messages[longest]["content"].encode("utf-8"), add_bos=False, special=False)
        keep = len(tokens) - excess - 16  # room for the marker
        if keep <= 0:
            return messages  # nothing left to cut: llama.cpp refuses it and the item fails
        head, tail = tokens[: keep * 2 // 3], tokens[len(tokens) - (keep - keep * 2 // 3):]
        text = (self._llama.detokenize(head).decode("utf-8", errors="ignore") + OMITTED.format(n=len(tokens) - len(head) - len(tail))
                + self._llama.detokenize(tail).decode("utf-8", errors="ignore"))
        return [*messages[:longest], {**messages[longest], "content": text}, *messages[longest + 1:]]

    def chat_arguments(self, request: LLMRequest) -> dict[str, Any]:
        messages: list[dict[str, str]] = [{"role": "system", "content": request.system}] if request.system else []
        messages += [{"role": m.role, "content": m.content} for m in request.messages]
        arguments: dict[str, Any] = {"messages": messages, "temperature": request.temperature, "max_tokens": request.max_tokens}
        if request.json_schema is not None:
            arguments["response_format"] = {"type": "json_object", "schema": request.json_schema}
        return arguments

    async def complete(self, request: LLMRequest) -> Completion:
        arguments = self.chat_arguments(request)
        async with self._lock:
            arguments["messages"] = await asyncio.to_thread(self.fit_messages, arguments["messages"], request.max_tokens)
            try:
                result = await asyncio.to_thread(self._llama.create_chat_completion, **arguments)
            except ValueError:  # "Requested tokens (...) exceed context window of ...": this item only
                # An empty answer fails the item through the client's schema checks (every stage asks for
                # JSON); the backend protocol has no per-item failure of its own.
                log.warning("%s request (%s) does not fit llama.cpp's context window of %d tokens; the item fails", request.role, request.task, self.n_ctx)
                return Completion("", Usage(0, 0))
        text = result["choices"][0]["message"]["content"] or ""
        usage = Usage(result["usage"]["prompt_tokens"], result["usage"]["completion_tokens"])
        return Completion(text, usage)

    async def aclose(self) -> None:
        close = getattr(self._llama, "close", None)  # only newer llama-cpp-python versions have it
        if close is not None:
            close()
