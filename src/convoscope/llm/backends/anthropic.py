"""Anthropic Messages API over HTTP (aiohttp).

Structured output uses a forced tool call: the schema is the tool's input_schema, the answer is the
tool_use block's input.

Prompt caching: the cached prefix is tools, then system, then messages, so a `cache_control`
breakpoint on the system prompt caches the schema and the static instructions together (the stages
put every static part there and the per-item text in the user message). The API ignores a breakpoint
on a prefix shorter than the model's minimum (1,024 to 4,096 tokens, `CACHE_MIN_TOKENS`) at no cost,
so one is always sent: whether the prefix is cached is the model's rule, not a guess of ours from a
rough token count. Usage counts cache writes and reads apart from `input_tokens`.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

import orjson

from convoscope.errors import ConfigError
from convoscope.llm.backends import Completion, TransientError
from convoscope.llm.backends.http import json_of, jsonl_lines, post_json, send
from convoscope.llm.base import LLMRequest, Usage
from convoscope.llm.batch import BatchStatus, ItemResult
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
        self.batches = AnthropicBatches(self)

    def request_body(self, request: LLMRequest) -> dict[str, Any]:
        messages = [{"role": m.role, "content": m.content} for m in request.messages]
        body: dict[str, Any] = {
            "model": self.spec.model,
            "max_tokens": request.max_tokens,
            "temperature": request.temperature,
            "messages": messages,
        }
        if request.system:
            body["system"] = [{"type": "text", "text": request.system, "cache_control": EPHEMERAL}]
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


class AnthropicBatches:
    """The Message Batches API: POST /v1/messages/batches with {"requests": [{custom_id, params}]}, GET
    /v1/messages/batches/{id} until `processing_status` is "ended", then the JSONL at `results_url`
    (one {custom_id, result: {type: succeeded|errored|canceled|expired, ...}} a line)."""

    max_items = 100_000
    max_bytes = 256 * 1024 * 1024

    def __init__(self, backend: AnthropicBackend):
        self._backend = backend
        self.url = backend.url + "/batches"
        self._results_url: dict[str, str] = {}

    def entry(self, custom_id: str, request: LLMRequest) -> dict[str, Any]:
        return {"custom_id": custom_id, "params": self._backend.request_body(request)}

    async def _call(self, method: str, url: str, body: dict[str, Any] | None = None) -> Any:
        backend = self._backend
        return await send(backend._http.client(), method, url, backend._headers, body=body, key_env="ANTHROPIC_API_KEY",
                          model=backend.spec.model, not_found="no Message Batches API here, or an unknown batch")

    async def create(self, entries: list[dict[str, Any]]) -> str:
        data = json_of(await self._call("POST", self.url, {"requests": entries}))
        return _field(data, "id")

    async def status(self, batch_id: str) -> BatchStatus:
        data = json_of(await self._call("GET", f"{self.url}/{batch_id}"))
        counts = data.get("request_counts") or {}
        finished = sum(int(counts.get(k) or 0) for k in ("succeeded", "errored", "canceled", "expired"))
        ended = _field(data, "processing_status") == "ended"
        if ended:
            self._results_url[batch_id] = data.get("results_url") or f"{self.url}/{batch_id}/results"
        return BatchStatus(ended=ended, finished=finished)

    async def results(self, batch_id: str) -> dict[str, ItemResult]:
        url = self._results_url.get(batch_id) or f"{self.url}/{batch_id}/results"
        out: dict[str, ItemResult] = {}
        for line in jsonl_lines(await self._call("GET", url)):
            custom_id, result = _field(line, "custom_id"), line.get("result") or {}
            kind = result.get("type")
            if kind == "succeeded":
                try:
                    out[custom_id] = ItemResult(answer_of(result["message"]))
                except (KeyError, TransientError) as exc:
                    out[custom_id] = ItemResult(retry=True, error=f"unreadable batch answer ({exc})")
            elif kind == "errored":
                error = (result.get("error") or {}).get("error") or result.get("error") or {}
                error_type = str(error.get("type") or "error")
                # a request the API refuses (invalid_request_error) would be refused again; other errors may pass
                out[custom_id] = ItemResult(retry=error_type != "invalid_request_error", error=f"batch item errored: {error_type}")
            else:  # canceled, expired
                out[custom_id] = ItemResult(retry=True, error=f"batch item {kind}")
        return out


def _field(data: Any, name: str) -> str:
    try:
        return str(data[name])
    except (KeyError, TypeError):
        raise TransientError(f"the server sent an unexpected batch response (no {name})") from None
