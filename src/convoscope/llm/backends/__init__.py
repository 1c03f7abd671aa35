"""Backends: one per wire protocol or in-process engine, all behind `Backend.complete`.

A backend sends exactly one request and reports what happened: a `Completion`, a `TransientError`
(the client retries) or an `LLMFatalError` (the run stops). Caching, retries, limits, usage and
schema validation live in the client, once, for every backend.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

from convoscope.llm.base import LLMRequest, Usage
from convoscope.llm.settings import BackendSpec, LLMSettings

if TYPE_CHECKING:
    from convoscope.llm.client import HttpPool


@dataclass
class Completion:
    text: str  # for structured requests, the JSON text
    usage: Usage


class TransientError(Exception):
    """Worth retrying: 429, 5xx, 529, a timeout, a dropped connection, a garbled body."""

    def __init__(self, reason: str, *, retry_after: float | None = None, unreachable: bool = False, rate_limited: bool = False):
        super().__init__(reason)
        self.retry_after = retry_after
        self.unreachable = unreachable  # the server could not be connected to at all
        self.rate_limited = rate_limited  # 429 or 529: fewer requests in flight would help


class Backend(Protocol):
    spec: BackendSpec
    local: bool  # in-process: no price, no network

    async def complete(self, request: LLMRequest) -> Completion: ...

    async def aclose(self) -> None: ...


def make_backend(spec: BackendSpec, settings: LLMSettings, http: HttpPool) -> Backend:
    # Imported here so an in-process engine's optional dependency is touched only when configured.
    if spec.kind == "anthropic":
        from convoscope.llm.backends.anthropic import AnthropicBackend

        return AnthropicBackend(spec, http)
    if spec.kind == "openai":
        from convoscope.llm.backends.openai_compat import OpenAICompatBackend

        return OpenAICompatBackend(spec, http)
    if spec.kind == "llamacpp":
        from convoscope.llm.backends.llamacpp import LlamaCppBackend

        return LlamaCppBackend(spec, settings)
    from convoscope.llm.backends.vllm import VLLMBackend

    return VLLMBackend(spec, settings)
