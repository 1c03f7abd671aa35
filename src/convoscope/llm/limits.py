"""Rate limits and retry delays."""

from __future__ import annotations

import asyncio
import json
import random
import time
from collections import deque
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


class AdaptiveLimit:
    """Requests in flight, at most `limit`, which adapts to the server (AIMD, as TCP does): halved on a
    rate limit (429, 529), one more after every `limit` successes, never above `maximum` nor below 1.
    Hosted APIs allow many requests in flight but each account has its own limits, not known ahead.
    As in TCP, one window of requests is cut once: a rate limit on a request sent before the last cut
    (the generation `acquire` returned) says nothing new and is ignored."""

    def __init__(self, maximum: int):
        self.maximum = maximum
        self.limit = float(maximum)
        self.in_flight = 0
        self.cuts = 0
        self._successes = 0  # since the limit last grew
        self._waiters: deque[asyncio.Future[None]] = deque()

    async def acquire(self) -> int:
        """Wait for a slot; returns the generation to pass to `rate_limited`."""
        if self.in_flight < int(self.limit) and not self._waiters:
            self.in_flight += 1
            return self.cuts
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        try:
            await waiter  # release() hands its slot over: in_flight is already counted for us
        except asyncio.CancelledError:
            if waiter.done() and not waiter.cancelled():
                self.release()  # the slot was handed over just as we were cancelled: pass it on
            else:
                self._waiters.remove(waiter)
            raise
        return self.cuts

    def release(self) -> None:
        self.in_flight -= 1
        self._wake()

    def _wake(self) -> None:
        while self._waiters and self.in_flight < int(self.limit):
            waiter = self._waiters.popleft()
            if not waiter.done():
                self.in_flight += 1
                waiter.set_result(None)

    def succeeded(self) -> None:
        if self.limit < self.maximum:
            self._successes += 1
            if self._successes >= int(self.limit):
                self.limit, self._successes = min(float(self.maximum), self.limit + 1), 0
                self._wake()

    def rate_limited(self, generation: int) -> None:
        if generation == self.cuts:
            self.limit = max(1.0, float(int(self.limit) // 2))
            self.cuts += 1
            self._successes = 0
