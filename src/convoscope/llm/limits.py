"""Rate limits and retry delays."""

from __future__ import annotations

import asyncio
import random
import time
from email.utils import parsedate_to_datetime


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
