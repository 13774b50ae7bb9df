"""Per-key rate limit on job creation: a token bucket per API key, in this process.

``rate`` tokens per second refill a bucket of ``burst``; each job-creating request takes one.
An empty bucket answers 429 with ``Retry-After`` (when the next token arrives). A rate of 0
turns the limit off.
"""

from __future__ import annotations

import time
from collections import OrderedDict

from gateway.errors import RateLimited

MAX_KEYS = 100_000


class RateLimiter:
    def __init__(self, rate: float, burst: int) -> None:
        self.rate = rate
        self.burst = max(1, burst)
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()

    def take(self, key: str, now: float | None = None) -> None:
        """Spend one token of ``key``'s bucket or raise ``RateLimited``."""
        if self.rate <= 0:
            return
        now = time.monotonic() if now is None else now
        tokens, last = self._buckets.pop(key, (float(self.burst), now))
        tokens = min(float(self.burst), tokens + (now - last) * self.rate)
        if tokens < 1.0:
            self._buckets[key] = (tokens, now)
            wait = (1.0 - tokens) / self.rate
            raise RateLimited(
                f"Rate limit reached: at most {self.rate:g} job submissions per second "
                f"(bursts of {self.burst}) per API key. Retry after {wait:.1f} s.",
                retry_after=wait,
                code="rate_limit_exceeded",
            )
        self._buckets[key] = (tokens - 1.0, now)
        if len(self._buckets) > MAX_KEYS:
            self._buckets.popitem(last=False)
