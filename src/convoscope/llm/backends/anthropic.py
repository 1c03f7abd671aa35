"""Anthropic Messages API over httpx.

Structured output uses a forced tool call: the schema is the tool's input_schema, the answer is the
tool_use block's input.

Prompt caching: the cached prefix is tools, then system, then messages, so a `cache_control`
breakpoint on the system prompt caches the schema and the static instructions together (the stages
put every static part there and the per-item text in the user message). The API ignores a breakpoint
on a prefix shorter than the model's minimum (below), at no cost; we send one only when the prefix
may reach it. Usage then counts cache writes and reads apart from `input_tokens`.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

import orjson

from convoscope.errors import ConfigError
from convoscope.llm.backends import Completion, TransientError
from convoscope.llm.backends.http import post_json
from convoscope.llm.base import LLMRequest, Usage
from convoscope.llm.limits import approx_tokens, schema_tokens
from convoscope.llm.settings import BackendSpec

if TYPE_CHECKING:
    from convoscope.llm.client import HttpPool

API_VERSION = "2023-06-01"
DEFAULT_URL = "https://api.anthropic.com"
TOOL_NAME = "answer"
# The shortest prefix each model caches, in tokens (Anthropic's prompt-caching docs); others: 1024.
CACHE_MIN_TOKENS = {"claude-3-haiku": 2048, "claude-3-5-haiku": 2048, "claude-haiku-4-5": 4096, "claude-opus-4-5": 4096}
EPHEMERAL = {"type": "ephemeral"}


def cache_min_tokens(model: str) -> int:
    matches = [name for name in CACHE_MIN_TOKENS if model.startswith(name)]
    return CACHE_MIN_TOKENS[max(matches, key=len)] if matches else 1024


def usage_of(data: dict[str, Any]) -> Usage:
    """Messages API usage: `input_tokens` there excludes the cache reads and writes; ours includes them."""
    usage = data["usage"]
    read = int(usage.get("cache_read_input_tokens") or 0)
    write = int(usage.get("cache_creation_input_tokens") or 0)
    return Usage(int(usage["input_tokens"]) + read + write, int(usage["output_tokens"]), read, write)


def answer_of(data: dict[str, Any]) -> Completion:
    """A Messages API response (live, or one succeeded batch item) as a Completion."""
    try:
        blocks = data["content"]
        usage = usage_of(data)
    except (KeyError, TypeError, ValueError):
        raise TransientError("the server sent an unexpected response shape") from None
    for block in blocks:
        if block.get("type") == "tool_use":
            return Completion(orjson.dumps(block.get("input")).decode(), usage)
    return Completion("".join(block.get("text", "") for block in blocks if block.get("type") == "text"), usage)


class AnthropicBackend:
    local = False

    def __init__(self, spec: BackendSpec, http: HttpPool):
        self.spec = spec
        self._http = http
        base = spec.base_url or os.environ.get("ANTHROPIC_BASE_URL") or DEFAULT_URL
        base = base.rstrip("/")
        self.url = base + ("/messages" if base.endswith("/v1") else "/v1/messages")
        key = os.environ.get("ANTHROPIC_API_KEY")
        if not key and base == DEFAULT_URL:
            raise ConfigError(f"ANTHROPIC_API_KEY is not set (needed by '{spec}')")
        self._headers = {"anthropic-version": API_VERSION, **({"x-api-key": key} if key else {})}
        # a breakpoint is sent from half the model's minimum on: the prefix estimate (bytes / 4) is rough
        self._cache_from_tokens = cache_min_tokens(spec.model) // 2

    def request_body(self, request: LLMRequest) -> dict[str, Any]:
        messages = [{"role": m.role, "content": m.content} for m in request.messages]
        body: dict[str, Any] = {
            "model": self.spec.model,
            "max_tokens": request.max_tokens,
            "temperature": request.temperature,
            "messages": messages,
        }
        if request.system:
            prefix = approx_tokens(request.system) + (schema_tokens(request.json_schema) if request.json_schema is not None else 0)
            if prefix >= self._cache_from_tokens:
                body["system"] = [{"type": "text", "text": request.system, "cache_control": EPHEMERAL}]
            else:
                body["system"] = request.system
        if request.json_schema is not None:
            body["tools"] = [
                {"name": TOOL_NAME, "description": "Give the answer in this structure.", "input_schema": request.json_schema}
            ]
            body["tool_choice"] = {"type": "tool", "name": TOOL_NAME}
        return body

    async def complete(self, request: LLMRequest) -> Completion:
        data = await post_json(
            self._http.client(), self.url, self._headers, self.request_body(request), key_env="ANTHROPIC_API_KEY", model=self.spec.model
        )
        return answer_of(data)

    async def aclose(self) -> None:
        return None
