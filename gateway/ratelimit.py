"""Per-key limits on job creation: a token bucket per key, and each key's own limits.

``rate`` tokens per second refill a bucket of ``burst``; each job-creating request takes one.
An empty bucket answers 429 with ``Retry-After`` (when the next token arrives). A rate of 0
turns the limit off. ``Limits`` holds the gateway's defaults (settings); ``KeyLimits`` a
key's own overrides (stored with the key; ``None``: the default).

Two limiters behind one seam:

- ``LocalRateLimiter`` keeps the buckets in this process: exact when one process owns the
  store (SQLite).
- ``SharedRateLimiter`` keeps them in the store (PostgreSQL: one row per key, refilled and
  spent in one atomic statement on the database's clock), so N replicas grant what one would,
  not N times as much. It costs one round trip per submit, never more. It also remembers, per
  key, until when the shared bucket is *certainly* empty and refuses those requests without
  asking the database: tokens only come back at ``rate``, and other replicas can only take
  more, so no replica can see a token before then (the origin is the moment the request was
  sent, which is no later than the moment the database counted). That shortcut only ever
  refuses what the database would refuse; it never grants, so the bound holds exactly: a key
  gets at most ``burst + rate * t`` jobs in any ``t`` seconds, across every replica. A flood
  of refused requests from one key then costs the database nothing.
"""

from __future__ import annotations

import time
from abc import ABC, abstractmethod
from collections import OrderedDict
from dataclasses import dataclass
from typing import Protocol

from gateway.errors import RateLimited
from gateway.spend import Budgets

MAX_KEYS = 100_000


class BucketStore(Protocol):
    """What the shared limiter needs of a store (``JobStore`` has it): whether replicas share
    it, and one atomic take from a key's bucket (seconds until a token, 0 when one was
    taken)."""

    @property
    def shares_rate_limits(self) -> bool: ...

    async def take_rate_token(self, bucket: str, rate: float, burst: int) -> float: ...


@dataclass(frozen=True)
class KeyLimits:
    """A key's own limits; ``None`` means the gateway's default (settings)."""

    #: job creations per second (0: no rate limit for this key)
    rate_limit: float | None = None
    rate_burst: int | None = None
    #: jobs QUEUED + PROCESSING at once (0: no cap for this key)
    max_active_jobs: int | None = None
    #: the key's budgets (None: none; gateway/spend.py)
    budgets: Budgets | None = None


@dataclass(frozen=True)
class Limits:
    """The limits in force for one key (or the gateway's defaults)."""

    rate: float = 0.0
    burst: int = 20
    max_active: int = 0

    def apply(self, own: KeyLimits | None) -> Limits:
        """These defaults, overridden by what the key sets."""
        if own is None:
            return self
        return Limits(
            rate=self.rate if own.rate_limit is None else own.rate_limit,
            burst=self.burst if own.rate_burst is None else own.rate_burst,
            max_active=self.max_active if own.max_active_jobs is None else own.max_active_jobs,
        )


def refused(rate: float, burst: int, wait: float) -> RateLimited:
    return RateLimited(
        f"Rate limit reached: at most {rate:g} job submissions per second "
        f"(bursts of {burst}) for this API key. Retry after {wait:.1f} s.",
        retry_after=wait,
        code="rate_limit_exceeded",
    )


class RateLimiter(ABC):
    @abstractmethod
    async def take(self, key: str, rate: float, burst: int) -> None:
        """Spend one token of ``key``'s bucket or raise ``RateLimited`` (429)."""


class LocalRateLimiter(RateLimiter):
    """Buckets in this process (exact for a store only this process uses)."""

    def __init__(self) -> None:
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()

    async def take(self, key: str, rate: float, burst: int) -> None:
        self.take_at(key, rate, burst, time.monotonic())

    def take_at(self, key: str, rate: float, burst: int, now: float) -> None:
        """``take`` on a given clock (``now`` in seconds, monotonic)."""
        if rate <= 0:
            return
        burst = max(1, burst)
        tokens, last = self._buckets.pop(key, (float(burst), now))
        tokens = min(float(burst), tokens + max(0.0, now - last) * rate)
        if tokens < 1.0:
            self._buckets[key] = (tokens, now)
            raise refused(rate, burst, (1.0 - tokens) / rate)
        self._buckets[key] = (tokens - 1.0, now)
        if len(self._buckets) > MAX_KEYS:
            self._buckets.popitem(last=False)


class SharedRateLimiter(RateLimiter):
    """Buckets in the store, shared by every replica (see the module's docstring)."""

    def __init__(self, store: BucketStore) -> None:
        self.store = store
        #: key -> (monotonic time before which its bucket is certainly empty, rate, burst)
        self._empty_until: OrderedDict[str, tuple[float, float, int]] = OrderedDict()

    async def take(self, key: str, rate: float, burst: int) -> None:
        if rate <= 0:
            return
        burst = max(1, burst)
        now = time.monotonic()
        known = self._empty_until.get(key)
        if known is not None:
            until, known_rate, known_burst = known
            if now < until and (known_rate, known_burst) == (rate, burst):
                raise refused(rate, burst, until - now)
            del self._empty_until[key]
        wait = await self.store.take_rate_token(key, rate, burst)
        if wait > 0:
            self._empty_until[key] = (now + wait, rate, burst)
            if len(self._empty_until) > MAX_KEYS:
                self._empty_until.popitem(last=False)
            raise refused(rate, burst, wait)


def rate_limiter_for(store: BucketStore) -> RateLimiter:
    """The shared limiter when replicas share the store, else the in-process one."""
    return SharedRateLimiter(store) if store.shares_rate_limits else LocalRateLimiter()
