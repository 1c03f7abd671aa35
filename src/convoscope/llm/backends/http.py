"""One HTTP POST with the error classification every HTTP backend shares."""

from __future__ import annotations

from typing import Any

import httpx
import orjson

from convoscope.errors import LLMFatalError
from convoscope.llm.backends import TransientError
from convoscope.llm.limits import parse_retry_after

_RETRYABLE = {408, 409, 425, 429, 500, 502, 503, 504, 520, 522, 524, 529}


async def post_json(
    http: httpx.AsyncClient, url: str, headers: dict[str, str], body: dict[str, Any], *, key_env: str | None, model: str
) -> dict[str, Any]:
    try:
        response = await http.post(url, content=orjson.dumps(body), headers={"content-type": "application/json", **headers})
    except httpx.ConnectError as exc:
        raise TransientError(f"cannot connect to {url} ({exc or type(exc).__name__})", unreachable=True) from None
    except httpx.TimeoutException:
        raise TransientError("request timed out") from None
    except httpx.TransportError as exc:  # dropped connection, reset, protocol error
        raise TransientError(f"connection error ({type(exc).__name__})") from None
    status = response.status_code
    if status == 200:
        try:
            return orjson.loads(response.content)
        except orjson.JSONDecodeError:
            raise TransientError("the server sent a malformed JSON body") from None
    if status in _RETRYABLE or status >= 500:
        raise TransientError(f"HTTP {status}", retry_after=parse_retry_after(response.headers.get("retry-after")))
    detail = _error_message(response)
    if status in (401, 403):
        who = key_env if key_env else "the API key"
        raise LLMFatalError(f"{who} was rejected ({status})" + (f": {detail}" if detail and status == 403 else ""))
    if status == 404:
        raise LLMFatalError(f"model '{model}' not found at {url} (404)" + (f": {detail}" if detail else ""))
    raise LLMFatalError(f"{url} rejected the request ({status})" + (f": {detail}" if detail else ""))


def _error_message(response: httpx.Response) -> str:
    """The vendor's error message, one line and short (it may not quote the prompt, but be safe)."""
    try:
        body = orjson.loads(response.content)
    except orjson.JSONDecodeError:
        return ""
    error = body.get("error") if isinstance(body, dict) else None
    message = error.get("message", "") if isinstance(error, dict) else str(error or "")
    return " ".join(str(message).split())[:200]
