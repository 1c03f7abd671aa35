"""HTTP requests with the error classification every HTTP backend shares: a transient failure
(`TransientError`, retried by the caller) or a fatal one (`LLMFatalError`, the run stops)."""

from __future__ import annotations

from typing import Any

import httpx
import orjson

from convoscope.errors import LLMFatalError
from convoscope.llm.backends import TransientError
from convoscope.llm.limits import parse_retry_after

_RETRYABLE = {408, 409, 425, 429, 500, 502, 503, 504, 520, 522, 524, 529}


async def send(
    http: httpx.AsyncClient,
    method: str,
    url: str,
    headers: dict[str, str],
    *,
    body: dict[str, Any] | None = None,
    files: dict[str, tuple[str, bytes, str]] | None = None,
    data: dict[str, str] | None = None,
    key_env: str | None,
    model: str,
    not_found: str | None = None,
) -> httpx.Response:
    """One request; a 2xx response is returned, anything else raised as transient or fatal.
    `not_found`: what a 404 means here, when it is not an unknown model (e.g. no batch API)."""
    try:
        if body is not None:
            response = await http.request(method, url, content=orjson.dumps(body), headers={"content-type": "application/json", **headers})
        else:
            response = await http.request(method, url, files=files, data=data, headers=headers)
    except httpx.ConnectError as exc:
        raise TransientError(f"cannot connect to {url} ({exc or type(exc).__name__})", unreachable=True) from None
    except httpx.TimeoutException:
        raise TransientError("request timed out") from None
    except httpx.TransportError as exc:  # dropped connection, reset, protocol error
        raise TransientError(f"connection error ({type(exc).__name__})") from None
    status = response.status_code
    if 200 <= status < 300:
        return response
    if status in _RETRYABLE or status >= 500:
        raise TransientError(f"HTTP {status}", retry_after=parse_retry_after(response.headers.get("retry-after")))
    detail = _error_message(response)
    if status in (401, 403):
        who = key_env if key_env else "the API key"
        raise LLMFatalError(f"{who} was rejected ({status})" + (f": {detail}" if detail and status == 403 else ""))
    if status == 404 and not_found:
        raise LLMFatalError(f"{url}: {not_found} (404)" + (f": {detail}" if detail else ""))
    if status == 404:
        raise LLMFatalError(f"model '{model}' not found at {url} (404)" + (f": {detail}" if detail else ""))
    raise LLMFatalError(f"{url} rejected the request ({status})" + (f": {detail}" if detail else ""))


def json_of(response: httpx.Response) -> Any:
    try:
        return orjson.loads(response.content)
    except orjson.JSONDecodeError:
        raise TransientError("the server sent a malformed JSON body") from None


async def post_json(
    http: httpx.AsyncClient, url: str, headers: dict[str, str], body: dict[str, Any], *, key_env: str | None, model: str
) -> dict[str, Any]:
    return json_of(await send(http, "POST", url, headers, body=body, key_env=key_env, model=model))


def jsonl_lines(response: httpx.Response) -> list[Any]:
    """A JSONL download (batch results), one value a line; a garbled line makes the download transient."""
    try:
        return [orjson.loads(line) for line in response.content.splitlines() if line.strip()]
    except orjson.JSONDecodeError:
        raise TransientError("the server sent a malformed JSONL line") from None


def _error_message(response: httpx.Response) -> str:
    """The vendor's error message, one line and short (it may not quote the prompt, but be safe)."""
    try:
        body = orjson.loads(response.content)
    except orjson.JSONDecodeError:
        return ""
    error = body.get("error") if isinstance(body, dict) else None
    message = error.get("message", "") if isinstance(error, dict) else str(error or "")
    return " ".join(str(message).split())[:200]
