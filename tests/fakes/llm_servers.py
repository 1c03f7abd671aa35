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

Batch interfaces over the same HTTP: Anthropic Message Batches (`POST /v1/messages/batches`, `GET
.../{id}`, `GET .../{id}/results` JSONL) and the OpenAI Batch API (`POST /v1/files` multipart
purpose=batch, `POST /v1/batches`, `GET /v1/batches/{id}`, `GET /v1/files/{id}/content` for the output
and error files). Items are answered by the same responder and prompt cache as live requests, when the
batch ends at its `batch_polls`-th status poll (never while `hold_batches` is set). `fail_next_items(n,
kind=)` makes the next items come back errored ("errored": a server error; "invalid": refused) or
expired. Counters: `batch_creates`, `batches` (id -> items, polls, results).

Run standalone (for benchmarks): `python tests/fakes/llm_servers.py openai --latency 0.05` prints the URL.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
import sys
from collections import deque
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
        # batch interfaces: a batch ends at its `batch_polls`-th status poll (never while `hold_batches`)
        self.batch_polls = 1
        self.hold_batches = False
        self.batch_creates = 0
        self.batches: dict[str, dict[str, Any]] = {}  # id -> {"items": [(custom_id, body)], "polls", "results"}
        self._item_faults: deque[str] = deque()
        self.files: dict[str, bytes] = {}  # OpenAI files (batch input, output and error JSONL)

    def fail_next_items(self, n: int = 1, *, kind: str = "errored") -> None:
        """The next n batch items processed come back as `kind`: "errored" (a server error, worth
        resubmitting), "invalid" (refused as an invalid request) or "expired"."""
        self._item_faults.extend(kind for _ in range(n))

    def _new_batch(self, prefix: str, items: list[tuple[str, dict[str, Any]]]) -> str:
        self.batch_creates += 1
        batch_id = f"{prefix}{self.batch_creates:04d}"
        self.batches[batch_id] = {"items": items, "polls": 0, "results": None}
        return batch_id

    def _poll(self, batch_id: str) -> dict[str, Any]:
        """Count a status poll; the batch ends (its items are answered, in order) at the `batch_polls`-th."""
        batch = self.batches[batch_id]
        batch["polls"] += 1
        if batch["results"] is None and not self.hold_batches and batch["polls"] >= self.batch_polls:
            batch["results"] = [(custom_id, self._item_faults.popleft() if self._item_faults else None, body) for custom_id, body in batch["items"]]
            batch["results"] = [(c, fault, None if fault else self.batch_answer(body)) for c, fault, body in batch["results"]]
        return batch

    def batch_answer(self, body: dict[str, Any]) -> dict[str, Any]:
        raise NotImplementedError

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
        path = path.rstrip("/")
        if path.startswith(("/v1/files", "/v1/batches")):
            return self._batch_route(method, path, body)
        if self.models is not None and body.get("model") not in self.models:
            return json_reply(404, {"error": {"message": f"The model `{body.get('model')}` does not exist.", "code": "model_not_found"}})
        if method == "POST" and path.rstrip("/") == "/v1/chat/completions":
            return json_reply(200, self._chat(body))
        if method == "POST" and path.rstrip("/") == "/v1/embeddings":
            return json_reply(200, self._embeddings(body))
        return json_reply(404, {"error": {"message": f"no route {method} {path}"}})

    # -- the Batch API: /v1/files (purpose=batch JSONL), /v1/batches, /v1/files/{id}/content --------------

    def _batch_route(self, method: str, path: str, body: dict[str, Any]) -> Reply:
        if method == "POST" and path == "/v1/files":
            if body.get("purpose") != "batch" or not isinstance(body.get("file"), bytes):
                return json_reply(400, {"error": {"message": "expected purpose=batch and a file", "code": "invalid_request"}})
            file_id = f"file-{len(self.files) + 1:04d}"
            self.files[file_id] = body["file"]
            return json_reply(200, {"id": file_id, "object": "file", "bytes": len(body["file"]), "purpose": "batch", "filename": "input.jsonl"})
        if method == "POST" and path == "/v1/batches":
            content = self.files.get(str(body.get("input_file_id")))
            if content is None or body.get("endpoint") != "/v1/chat/completions" or body.get("completion_window") != "24h":
                return json_reply(400, {"error": {"message": "bad batch request", "code": "invalid_request"}})
            lines = [json.loads(line) for line in content.splitlines() if line.strip()]
            if any(line.get("method") != "POST" or line.get("url") != "/v1/chat/completions" for line in lines):
                batch_id = self._new_batch("batch_", [])
                self.batches[batch_id]["failed"] = True
            else:
                batch_id = self._new_batch("batch_", [(line["custom_id"], line["body"]) for line in lines])
            return json_reply(200, self._batch_object(batch_id))
        match = re.fullmatch(r"/v1/batches/([\w-]+)", path)
        if method == "GET" and match and match.group(1) in self.batches:
            self._poll(match.group(1))
            return json_reply(200, self._batch_object(match.group(1)))
        match = re.fullmatch(r"/v1/files/([\w-]+)/content", path)
        if method == "GET" and match and match.group(1) in self.files:
            return 200, {"content-type": "application/octet-stream"}, self.files[match.group(1)]
        return json_reply(404, {"error": {"message": f"no route {method} {path}"}})

    def _batch_object(self, batch_id: str) -> dict[str, Any]:
        batch = self.batches[batch_id]
        total = len(batch["items"])
        status, output_file, error_file, completed, failed = "in_progress" if batch["polls"] else "validating", None, None, 0, 0
        if batch.get("failed"):
            status = "failed" if batch["polls"] else "validating"
        elif batch["results"] is not None:
            status = "completed"
            if "files" not in batch:
                good = [(c, a) for c, fault, a in batch["results"] if fault is None]
                bad = [(c, fault) for c, fault, _ in batch["results"] if fault is not None]
                batch["files"] = (self._store_lines(batch_id, "out", [self._output_line(c, a) for c, a in good]),
                                  self._store_lines(batch_id, "err", [self._error_line(c, fault) for c, fault in bad]))
            output_file, error_file = batch["files"]
            failed = sum(1 for _, fault, _ in batch["results"] if fault is not None)
            completed = total - failed
        errors = {"object": "list", "data": [{"code": "invalid_request", "message": "line 1: bad url", "line": 1}]} if batch.get("failed") else None
        return {"id": batch_id, "object": "batch", "endpoint": "/v1/chat/completions", "errors": errors, "input_file_id": "file-in",
                "completion_window": "24h", "status": status, "output_file_id": output_file, "error_file_id": error_file,
                "request_counts": {"total": total, "completed": completed, "failed": failed}}

    def _store_lines(self, batch_id: str, kind: str, lines: list[dict[str, Any]]) -> str | None:
        if not lines:
            return None  # the real API leaves the file id null when there is nothing to put in it
        file_id = f"file-{batch_id}-{kind}"
        self.files[file_id] = b"".join(json.dumps(line).encode() + b"\n" for line in lines)
        return file_id

    @staticmethod
    def _output_line(custom_id: str, answer: dict[str, Any]) -> dict[str, Any]:
        return {"id": f"batch_req_{custom_id[:8]}", "custom_id": custom_id, "response": {"status_code": 200, "request_id": "req_fake", "body": answer}, "error": None}

    @staticmethod
    def _error_line(custom_id: str, fault: str) -> dict[str, Any]:
        if fault == "expired":
            return {"id": "batch_req_x", "custom_id": custom_id, "response": None,
                    "error": {"code": "batch_expired", "message": "This request could not be executed before the completion window expired."}}
        status = 400 if fault == "invalid" else 500
        return {"id": "batch_req_x", "custom_id": custom_id,
                "response": {"status_code": status, "request_id": "req_fake", "body": {"error": {"message": "injected fault", "type": "server_error"}}},
                "error": None}

    def batch_answer(self, body: dict[str, Any]) -> dict[str, Any]:
        return self._chat(body)

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
        path = path.rstrip("/")
        if path.startswith("/v1/messages/batches"):
            return self._batch_route(method, path, body)
        if self.models is not None and body.get("model") not in self.models:
            return json_reply(404, {"type": "error", "error": {"type": "not_found_error", "message": f"model: {body.get('model')}"}})
        if method != "POST" or path != "/v1/messages":
            return json_reply(404, {"type": "error", "error": {"type": "not_found_error", "message": f"no route {method} {path}"}})
        return json_reply(200, self.message(body, f"msg_fake_{self.request_count}"))

    # -- Message Batches: POST /v1/messages/batches, GET .../{id}, GET .../{id}/results (JSONL) -----------

    def _batch_route(self, method: str, path: str, body: dict[str, Any]) -> Reply:
        if method == "POST" and path == "/v1/messages/batches":
            requests = body.get("requests")
            if not isinstance(requests, list) or not requests or any(
                not re.fullmatch(r"[a-zA-Z0-9_-]{1,64}", str(r.get("custom_id"))) or "params" not in r for r in requests
            ):
                return json_reply(400, {"type": "error", "error": {"type": "invalid_request_error", "message": "bad requests"}})
            if len({r["custom_id"] for r in requests}) != len(requests):
                return json_reply(400, {"type": "error", "error": {"type": "invalid_request_error", "message": "custom_id must be unique"}})
            return json_reply(200, self._batch_object(self._new_batch("msgbatch_", [(r["custom_id"], r["params"]) for r in requests])))
        match = re.fullmatch(r"/v1/messages/batches/(\w+)(/results)?", path)
        if method == "GET" and match and match.group(1) in self.batches:
            batch_id = match.group(1)
            if match.group(2) is None:
                self._poll(batch_id)
                return json_reply(200, self._batch_object(batch_id))
            results = self.batches[batch_id]["results"]
            if results is None:
                return json_reply(400, {"type": "error", "error": {"type": "invalid_request_error", "message": "batch has not ended"}})
            lines = [{"custom_id": c, "result": self._result(fault, answer)} for c, fault, answer in results]
            return 200, {"content-type": "application/binary"}, b"".join(json.dumps(line).encode() + b"\n" for line in lines)
        return json_reply(404, {"type": "error", "error": {"type": "not_found_error", "message": f"no route {method} {path}"}})

    @staticmethod
    def _result(fault: str | None, answer: dict[str, Any] | None) -> dict[str, Any]:
        if fault is None:
            return {"type": "succeeded", "message": answer}
        if fault == "expired":
            return {"type": "expired"}
        kind = "invalid_request_error" if fault == "invalid" else "api_error"
        return {"type": "errored", "error": {"type": "error", "error": {"type": kind, "message": "injected fault"}}}

    def _batch_object(self, batch_id: str) -> dict[str, Any]:
        batch = self.batches[batch_id]
        results = batch["results"]
        counts = {"processing": len(batch["items"]), "succeeded": 0, "errored": 0, "canceled": 0, "expired": 0}
        if results is not None:
            counts["processing"] = 0
            for _, fault, _ in results:
                counts[{None: "succeeded", "expired": "expired"}.get(fault, "errored")] += 1
        ended = results is not None
        return {"id": batch_id, "type": "message_batch", "processing_status": "ended" if ended else "in_progress", "request_counts": counts,
                "ended_at": "2026-01-01T00:00:00Z" if ended else None, "created_at": "2026-01-01T00:00:00Z", "expires_at": "2026-01-02T00:00:00Z",
                "cancel_initiated_at": None, "results_url": f"{self.url}/v1/messages/batches/{batch_id}/results" if ended else None}

    def batch_answer(self, body: dict[str, Any]) -> dict[str, Any]:
        return self.message(body, f"msg_fake_batch_{self.batch_creates}")

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
