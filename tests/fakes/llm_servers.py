"""Fake OpenAI and Anthropic servers over real HTTP on loopback, speaking the vendors' wire protocols.

    from fakes.llm_servers import FakeOpenAIServer, FakeAnthropicServer, last_user_text, schema_of

    def responder(body: dict) -> str:          # the request body exactly as the client sent it
        if schema_of(body) is not None:        # a structured request (OpenAI json_schema / Anthropic tool)
            return '{"summary": "The user asked for help with a recipe."}'
        return "yes" if "recipe" in last_user_text(body) else "no"

    with FakeOpenAIServer(responder=responder, latency=0.01) as server:
        settings = LLMSettings(facets=f"openai:fake-model@{server.url}", cache=False)
        ...                                    # run the client / pipeline
        assert server.request_count == 3
        server.requests[0]["messages"]         # every request body, in arrival order

A responder is any `Callable[[dict], str]`: it gets the JSON request body and returns the answer
text. For Anthropic structured requests (a forced tool), text that parses as a JSON object becomes
the `tool_use` block's `input`; other text comes back as a text block, as a real model might do.
Without a responder, a structured request gets a schema-valid example generated from its schema and
any other request gets `DEFAULT_TEXT`.

Faults (applied to the next requests in arrival order, see `FakeHTTPServer`):
`fail_next(n, status=429, retry_after=1)`, `drop_next(n)`, `malformed_next(n)`, `slow_next(n, delay=)`;
`latency=` delays every request; `api_key=` makes any other key a 401; `models=` makes other models 404.
Counters: `request_count`, `requests` (bodies), `request_headers`, `max_in_flight`.

Prompt caching as the real APIs report it: OpenAI caches a prompt prefix (the system message and the
response schema here) once the prompt reaches 1024 tokens, in 128-token steps, and reports
`usage.prompt_tokens_details.cached_tokens` (part of `prompt_tokens`); Anthropic caches tools + system
when the system prompt carries a `cache_control` breakpoint and that prefix reaches the model's minimum
(2048 tokens for the Haiku 3.x models, 4096 for Haiku 4.5 and Opus 4.5, else 1024), reporting
`cache_creation_input_tokens` the first time and `cache_read_input_tokens` after (apart from
`input_tokens`). `cache_min_tokens=` overrides the minimum. A prefix seen before is cached.

Run standalone (for benchmarks): `python tests/fakes/llm_servers.py openai --latency 0.05` prints the URL.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
import sys
from pathlib import Path
from typing import Any, Callable

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # so `fakes.` imports work when run as a script

from fakes.llm_http import FakeHTTPServer, Reply, json_reply  # noqa: E402
from fakes.schema_example import example_for  # noqa: E402

Responder = Callable[[dict[str, Any]], str]
DEFAULT_TEXT = "This is a fake answer."


def schema_of(body: dict[str, Any]) -> dict[str, Any] | None:
    """The JSON schema a request asks for, in either protocol; None for free text."""
    response_format = body.get("response_format") or {}
    if response_format.get("type") == "json_schema":
        return response_format["json_schema"]["schema"]
    choice = body.get("tool_choice") or {}
    if choice.get("type") == "tool":
        for tool in body.get("tools", []):
            if tool.get("name") == choice.get("name"):
                return tool["input_schema"]
    return None


def last_user_text(body: dict[str, Any]) -> str:
    """The text of the last user message (string content or Anthropic text blocks)."""
    for message in reversed(body.get("messages", [])):
        if message.get("role") == "user":
            content = message.get("content")
            if isinstance(content, str):
                return content
            return "".join(block.get("text", "") for block in content if isinstance(block, dict))
    return ""


def default_responder(body: dict[str, Any]) -> str:
    schema = schema_of(body)
    return json.dumps(example_for(schema)) if schema is not None else DEFAULT_TEXT


def approx_tokens(value: Any) -> int:
    text = value if isinstance(value, str) else json.dumps(value)
    return max(1, math.ceil(len(text) / 4))


def hashed_embedding(text: str, dims: int) -> list[float]:
    """Bag of hashed words, L2-normalised: deterministic, and texts sharing words are similar."""
    vector = [0.0] * dims
    for word in re.findall(r"\w+", text.lower()):
        digest = hashlib.blake2b(word.encode(), digest_size=8).digest()
        index = int.from_bytes(digest[:4], "little") % dims
        vector[index] += 1.0 if digest[4] & 1 else -1.0
    norm = math.sqrt(sum(v * v for v in vector))
    if norm == 0:
        return [1.0] + [0.0] * (dims - 1)
    return [v / norm for v in vector]


class _FakeLLMServer(FakeHTTPServer):
    def __init__(
        self,
        responder: Responder | None = None,
        *,
        latency: float = 0.0,
        api_key: str | None = None,
        models: set[str] | None = None,
        cache_min_tokens: int | None = None,
    ):
        super().__init__(latency=latency, api_key=api_key)
        self.responder = responder or default_responder
        self.models = models  # None: every model exists
        self.cache_min_tokens = cache_min_tokens  # None: the vendor's rule
        self._cached_prefixes: set[str] = set()

    def _cache_lookup(self, prefix: Any) -> bool:
        """Whether this exact prefix was seen before (then it is read from the cache); remembers it."""
        key = hashlib.blake2b(json.dumps(prefix, sort_keys=True).encode(), digest_size=16).hexdigest()
        seen = key in self._cached_prefixes
        self._cached_prefixes.add(key)
        return seen

    def __enter__(self) -> "_FakeLLMServer":
        super().__enter__()
        return self


class FakeOpenAIServer(_FakeLLMServer):
    """`/v1/chat/completions` and `/v1/embeddings`. `url` is the server root; clients may add `/v1`."""

    def __init__(self, responder: Responder | None = None, *, embedding_dims: int = 64, **kwargs: Any):
        super().__init__(responder, **kwargs)
        self.embedding_dims = embedding_dims

    def route(self, method: str, path: str, headers: dict[str, str], body: dict[str, Any]) -> Reply:
        if self.api_key is not None and headers.get("authorization") != f"Bearer {self.api_key}":
            return json_reply(401, {"error": {"message": "Incorrect API key provided.", "type": "invalid_request_error", "code": "invalid_api_key"}})
        if self.models is not None and body.get("model") not in self.models:
            return json_reply(404, {"error": {"message": f"The model `{body.get('model')}` does not exist.", "code": "model_not_found"}})
        if method == "POST" and path.rstrip("/") == "/v1/chat/completions":
            return json_reply(200, self._chat(body))
        if method == "POST" and path.rstrip("/") == "/v1/embeddings":
            return json_reply(200, self._embeddings(body))
        return json_reply(404, {"error": {"message": f"no route {method} {path}"}})

    def _chat(self, body: dict[str, Any]) -> dict[str, Any]:
        text = self.responder(body)
        messages = body.get("messages", [])
        prompt_tokens = approx_tokens(messages)
        completion_tokens = approx_tokens(text)
        system = [m for m in messages[:1] if m.get("role") == "system"]
        prefix = [body.get("model"), system, body.get("response_format")]
        prefix_tokens = approx_tokens(system) + (approx_tokens(body["response_format"]) if body.get("response_format") else 0)
        minimum = self.cache_min_tokens if self.cache_min_tokens is not None else 1024
        cached = 0
        if system and prompt_tokens >= minimum and prefix_tokens >= minimum and self._cache_lookup(prefix):
            cached = min(prompt_tokens, prefix_tokens) // 128 * 128
        return {
            "id": f"chatcmpl-fake-{self.request_count}",
            "object": "chat.completion",
            "model": body.get("model"),
            "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}],
            "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens, "total_tokens": prompt_tokens + completion_tokens,
                      "prompt_tokens_details": {"cached_tokens": cached}},
        }

    def _embeddings(self, body: dict[str, Any]) -> dict[str, Any]:
        inputs = body.get("input", [])
        inputs = [inputs] if isinstance(inputs, str) else inputs
        dims = int(body.get("dimensions") or self.embedding_dims)
        tokens = sum(approx_tokens(t) for t in inputs)
        return {
            "object": "list",
            "model": body.get("model"),
            "data": [{"object": "embedding", "index": i, "embedding": hashed_embedding(t, dims)} for i, t in enumerate(inputs)],
            "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
        }


class FakeAnthropicServer(_FakeLLMServer):
    """`/v1/messages`, with `x-api-key` and `anthropic-version` headers, text and tool_use blocks."""

    def error_body(self, status: int, message: str) -> dict[str, Any]:
        kind = {429: "rate_limit_error", 529: "overloaded_error"}.get(status, "api_error")
        return {"type": "error", "error": {"type": kind, "message": message}}

    def route(self, method: str, path: str, headers: dict[str, str], body: dict[str, Any]) -> Reply:
        if self.api_key is not None and headers.get("x-api-key") != self.api_key:
            return json_reply(401, {"type": "error", "error": {"type": "authentication_error", "message": "invalid x-api-key"}})
        if "anthropic-version" not in headers:
            return json_reply(400, {"type": "error", "error": {"type": "invalid_request_error", "message": "anthropic-version header is required"}})
        if self.models is not None and body.get("model") not in self.models:
            return json_reply(404, {"type": "error", "error": {"type": "not_found_error", "message": f"model: {body.get('model')}"}})
        if method != "POST" or path.rstrip("/") != "/v1/messages":
            return json_reply(404, {"type": "error", "error": {"type": "not_found_error", "message": f"no route {method} {path}"}})
        return json_reply(200, self.message(body, f"msg_fake_{self.request_count}"))

    def cache_minimum(self, model: str) -> int:
        if self.cache_min_tokens is not None:
            return self.cache_min_tokens
        for prefix, minimum in (("claude-3-haiku", 2048), ("claude-3-5-haiku", 2048), ("claude-haiku-4-5", 4096), ("claude-opus-4-5", 4096)):
            if model.startswith(prefix):
                return minimum
        return 1024

    def message(self, body: dict[str, Any], message_id: str) -> dict[str, Any]:
        """The Messages API answer to one request body (live, or one item of a batch)."""
        text = self.responder(body)
        content: list[dict[str, Any]] = [{"type": "text", "text": text}]
        stop_reason = "end_turn"
        if schema_of(body) is not None:
            try:
                value = json.loads(text)
            except json.JSONDecodeError:
                value = None
            if isinstance(value, dict):
                content = [{"type": "tool_use", "id": f"toolu_fake_{self.request_count}", "name": body["tool_choice"]["name"], "input": value}]
                stop_reason = "tool_use"
        system = body.get("system", "")
        system_text = system if isinstance(system, str) else "".join(block.get("text", "") for block in system)
        breakpoint_set = isinstance(system, list) and bool(system) and "cache_control" in system[-1]
        prefix_tokens = approx_tokens(body.get("tools", [])) + approx_tokens(system_text) if body.get("tools") else approx_tokens(system_text)
        rest_tokens = approx_tokens(body.get("messages", []))
        read = write = 0
        if breakpoint_set and prefix_tokens >= self.cache_minimum(str(body.get("model"))):
            if self._cache_lookup([body.get("model"), body.get("tools"), system_text]):
                read = prefix_tokens
            else:
                write = prefix_tokens
        usage = {"input_tokens": prefix_tokens + rest_tokens - read - write, "output_tokens": approx_tokens(text),
                 "cache_creation_input_tokens": write, "cache_read_input_tokens": read}
        return {"id": message_id, "type": "message", "role": "assistant", "model": body.get("model"), "content": content,
                "stop_reason": stop_reason, "stop_sequence": None, "usage": usage}


if __name__ == "__main__":
    import argparse
    import time

    parser = argparse.ArgumentParser(description="Run a fake LLM server until killed.")
    parser.add_argument("protocol", choices=["openai", "anthropic"])
    parser.add_argument("--latency", type=float, default=0.0)
    args = parser.parse_args()
    server_class = FakeOpenAIServer if args.protocol == "openai" else FakeAnthropicServer
    with server_class(latency=args.latency) as server:
        print(server.url, flush=True)
        while True:
            time.sleep(3600)
