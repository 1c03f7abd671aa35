"""Anthropic Messages API over httpx.

Structured output uses a forced tool call: the schema is the tool's input_schema, the answer is the
tool_use block's input.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

import orjson

from convoscope.errors import ConfigError
from convoscope.llm.backends import Completion, TransientError
from convoscope.llm.backends.http import post_json
from convoscope.llm.base import LLMRequest, Usage
from convoscope.llm.settings import BackendSpec

if TYPE_CHECKING:
    from convoscope.llm.client import HttpPool

API_VERSION = "2023-06-01"
DEFAULT_URL = "https://api.anthropic.com"
TOOL_NAME = "answer"


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

    def request_body(self, request: LLMRequest) -> dict[str, Any]:
        messages = [{"role": m.role, "content": m.content} for m in request.messages]
        body: dict[str, Any] = {
            "model": self.spec.model,
            "max_tokens": request.max_tokens,
            "temperature": request.temperature,
            "messages": messages,
        }
        if request.system:
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
        try:
            blocks = data["content"]
            usage = Usage(int(data["usage"]["input_tokens"]), int(data["usage"]["output_tokens"]))
        except (KeyError, TypeError, ValueError):
            raise TransientError("the server sent an unexpected response shape") from None
        for block in blocks:
            if block.get("type") == "tool_use":
                return Completion(orjson.dumps(block.get("input")).decode(), usage)
        return Completion("".join(block.get("text", "") for block in blocks if block.get("type") == "text"), usage)

    async def aclose(self) -> None:
        return None
