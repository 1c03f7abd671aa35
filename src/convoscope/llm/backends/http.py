"""HTTP requests with the error classification every HTTP backend shares: a transient failure
(`TransientError`, retried by the caller) or a fatal one (`LLMFatalError`, the run stops).

aiohttp rather than httpx: measured against the fake server at 64 requests in flight, aiohttp spends
about 0.3 ms of CPU a request and httpx (httpcore's pool bookkeeping, anyio) about 3 ms, which capped
one process at a few hundred calls a second (benchmarks/llm_overhead.py, docs/llm.md).
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any, Mapping

import aiohttp
import orjson

from convoscope.errors import LLMFatalError
from convoscope.llm.backends import TransientError
from convoscope.llm.limits import parse_retry_after

_RETRYABLE = {408, 409, 425, 429, 500, 502, 503, 504, 520, 522, 524, 529}


@dataclass(frozen=True)
class Reply:
    status: int
    headers: Mapping[str, str]
    content: bytes


async def send(
    http: aiohttp.ClientSession,
    method: str,
    url: str,
    headers: dict[str, str],
    *,
    body: dict[str, Any] | None = None,
    form: aiohttp.FormData | None = None,
    key_env: str | None,
    model: str,
    not_found: str | None = None,
) -> Reply:
    """One request; a 2xx reply is returned, anything else raised as transient or fatal.
    `not_found`: what a 404 means here, when it is not an unknown model (e.g. no batch API)."""
    try:
        if body is not None:
            data: Any = orjson.dumps(body)
            headers = {"content-type": "application/json", **headers}
        else:
            data = form
        async with http.request(method, url, data=data, headers=headers) as response:
            reply = Reply(response.status, response.headers, await response.read())
    except aiohttp.ClientConnectorError as exc:
        raise TransientError(f"cannot connect to {url} ({exc.os_error or type(exc).__name__})", unreachable=True) from None
    except (asyncio.TimeoutError, aiohttp.ServerTimeoutError):
        raise TransientError("request timed out") from None
    except aiohttp.ClientError as exc:  # dropped connection, reset, protocol error
        raise TransientError(f"connection error ({type(exc).__name__})") from None
    classify(reply, url, key_env=key_env, model=model, not_found=not_found)
    return reply


def classify(reply: Reply, url: str, *, key_env: str | None, model: str, not_found: str | None = None) -> None:
    """Nothing for a 2xx reply; else raise it as transient (worth retrying) or fatal. Shared by every
    HTTP client of an inference API here (the LLM backends, the embeddings endpoint)."""
    status = reply.status
    if 200 <= status < 300:
        return
    if status in _RETRYABLE or status >= 500:
        raise TransientError(f"HTTP {status}", retry_after=parse_retry_after(reply.headers.get("retry-after")), rate_limited=status in (429, 529))
    detail = _error_message(reply)
    if status in (401, 403):
        who = key_env if key_env else "the API key"
        raise LLMFatalError(f"{who} was rejected ({status})" + (f": {detail}" if detail and status == 403 else ""))
    if status == 404 and not_found:
        raise LLMFatalError(f"{url}: {not_found} (404)" + (f": {detail}" if detail else ""))
    if status == 404:
        raise LLMFatalError(f"model '{model}' not found at {url} (404)" + (f": {detail}" if detail else ""))
    raise LLMFatalError(f"{url} rejected the request ({status})" + (f": {detail}" if detail else ""))


def json_of(reply: Reply) -> Any:
    try:
        return orjson.loads(reply.content)
    except orjson.JSONDecodeError:
        raise TransientError("the server sent a malformed JSON body") from None


async def post_json(
    http: aiohttp.ClientSession, url: str, headers: dict[str, str], body: dict[str, Any], *, key_env: str | None, model: str
) -> dict[str, Any]:
    return json_of(await send(http, "POST", url, headers, body=body, key_env=key_env, model=model))


def jsonl_lines(reply: Reply) -> list[Any]:
    """A JSONL download (batch results), one value a line; a garbled line makes the download transient."""
    try:
        return [orjson.loads(line) for line in reply.content.splitlines() if line.strip()]
    except orjson.JSONDecodeError:
        raise TransientError("the server sent a malformed JSONL line") from None


def _error_message(reply: Reply) -> str:
    """The vendor's error message, one line and short (it may not quote the prompt, but be safe)."""
    try:
        body = orjson.loads(reply.content)
    except orjson.JSONDecodeError:
        return ""
    error = body.get("error") if isinstance(body, dict) else None
    message = error.get("message", "") if isinstance(error, dict) else str(error or "")
    return " ".join(str(message).split())[:200]
