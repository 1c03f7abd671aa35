"""Rate limits and retry delays."""

from __future__ import annotations

import asyncio
import json
import random
import time
from email.utils import parsedate_to_datetime
from typing import Any

from convoscope.llm.base import LLMRequest


def approx_tokens(text: str) -> int:
    """Fast estimate for the hot path (rate limits, budget reservations): UTF-8 bytes / 4, which
    over-counts non-Latin scripts a little rather than under-counting them."""
    return (len(text.encode("utf-8")) + 3) // 4


_SCHEMA_TOKENS: dict[int, tuple[Any, int]] = {}  # id(schema) -> (schema, tokens): stages reuse one schema object


def schema_tokens(schema: dict[str, Any]) -> int:
    entry = _SCHEMA_TOKENS.get(id(schema))
    if entry is None or entry[0] is not schema:  # holding the schema keeps its id from being reused
        entry = (schema, approx_tokens(json.dumps(schema)))
        if len(_SCHEMA_TOKENS) > 256:
            _SCHEMA_TOKENS.clear()
        _SCHEMA_TOKENS[id(schema)] = entry
    return entry[1]


def approx_request_tokens(request: LLMRequest) -> int:
    """Input tokens of a request, estimated before it is sent (budget reservation, token bucket)."""
    text = (request.system or "") + "".join(m.content for m in request.messages)
    schema = schema_tokens(request.json_schema) if request.json_schema is not None else 0
    return approx_tokens(text) + schema + 4 * (len(request.messages) + 1)  # + per-message framing


class TokenBucket:
    """Allows `per_minute` units a minute on average, with bursts up to ten seconds' worth.

    An acquirer takes its units at once (the level may go negative) and sleeps until the debt is
    repaid, so waiters are served in arrival order without a lock or a polling loop."""

    def __init__(self, per_minute: float):
        self.rate = per_minute / 60.0
        self.capacity = max(1.0, self.rate * 10)
        self._level = self.capacity
        self._stamp = time.monotonic()

    async def acquire(self, units: float = 1.0) -> None:
        now = time.monotonic()
        self._level = min(self.capacity, self._level + (now - self._stamp) * self.rate)
        self._stamp = now
        self._level -= units
        if self._level < 0:
            await asyncio.sleep(-self._level / self.rate)

    def refund(self, units: float) -> None:
        """Give back units reserved but not used (e.g. max_tokens the answer did not need)."""
        self._level = min(self.capacity, self._level + units)


def parse_retry_after(value: str | None) -> float | None:
    """Retry-After as seconds or as an HTTP date; None when absent or unreadable."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        return max(0.0, parsedate_to_datetime(value).timestamp() - time.time())
    except (TypeError, ValueError, IndexError):
        return None


def backoff_delay(attempt: int, *, initial: float, maximum: float, retry_after: float | None) -> float:
    """Exponential backoff with full jitter; a server's Retry-After is a floor (it knows best)."""
    delay = random.uniform(0, min(maximum, initial * 2 ** (attempt - 1)))
    if retry_after is not None:
        delay = max(delay, retry_after)
    return delay
