"""Circuit breakers, one per route: stop sending jobs to a route that keeps failing.

A breaker is *closed* (traffic flows) until the route fails ``failure_threshold`` times in a
row, or at least ``failure_ratio`` of at least ``min_calls`` calls within ``window_seconds``
fail. It then *opens*: the route is skipped for ``cooldown_seconds``. After the cooldown it is
*half-open*: one probe job goes through; its success closes the breaker, its failure opens it
again for another cooldown. Only provider faults count: a rejected input or a cancel says
nothing about the route's health.
"""

from __future__ import annotations

import logging
import time
from collections import deque
from dataclasses import dataclass, field
from enum import StrEnum

log = logging.getLogger("backserv.breaker")


class BreakerState(StrEnum):
    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"


@dataclass(frozen=True)
class BreakerPolicy:
    failure_threshold: int = 5
    failure_ratio: float = 0.5
    min_calls: int = 10
    window_seconds: float = 60.0
    cooldown_seconds: float = 30.0


@dataclass
class CircuitBreaker:
    name: str
    policy: BreakerPolicy = field(default_factory=BreakerPolicy)
    state: BreakerState = BreakerState.CLOSED
    consecutive_failures: int = 0
    opened_at: float | None = None
    probe_in_flight: bool = False
    _calls: deque[tuple[float, bool]] = field(default_factory=deque)

    def retry_at(self) -> float | None:
        """When an open breaker lets a probe through (None when not open)."""
        if self.state is BreakerState.OPEN and self.opened_at is not None:
            return self.opened_at + self.policy.cooldown_seconds
        return None

    def allow(self, now: float | None = None) -> bool:
        """Whether a job may use the route now; a half-open breaker admits one probe."""
        now = time.monotonic() if now is None else now
        if self.state is BreakerState.OPEN:
            reopen = self.retry_at()
            if reopen is None or now < reopen:
                return False
            self._move(BreakerState.HALF_OPEN)
        if self.state is BreakerState.HALF_OPEN:
            if self.probe_in_flight:
                return False
            self.probe_in_flight = True
        return True

    def record(self, ok: bool, now: float | None = None) -> None:
        now = time.monotonic() if now is None else now
        self._calls.append((now, ok))
        horizon = now - self.policy.window_seconds
        while self._calls and self._calls[0][0] < horizon:
            self._calls.popleft()
        if self.state is BreakerState.HALF_OPEN:
            self.probe_in_flight = False
            if ok:
                self._close()
            else:
                self._open(now)
            return
        if ok:
            self.consecutive_failures = 0
            return
        self.consecutive_failures += 1
        failures = sum(1 for _, good in self._calls if not good)
        if self.consecutive_failures >= self.policy.failure_threshold or (
            len(self._calls) >= self.policy.min_calls
            and failures / len(self._calls) >= self.policy.failure_ratio
        ):
            self._open(now)

    def release_probe(self) -> None:
        """A probe that ended without a verdict (cancelled, input error) frees the slot."""
        self.probe_in_flight = False

    def _open(self, now: float) -> None:
        self.opened_at = now
        self._move(BreakerState.OPEN)

    def _close(self) -> None:
        self.consecutive_failures = 0
        self.opened_at = None
        self._calls.clear()
        self._move(BreakerState.CLOSED)

    def _move(self, state: BreakerState) -> None:
        if state is not self.state:
            log.warning("circuit breaker %s: %s -> %s", self.name, self.state, state)
            self.state = state


class Breakers:
    """The breakers of every route, created on first use."""

    def __init__(self, policy: BreakerPolicy | None = None) -> None:
        self.policy = policy or BreakerPolicy()
        self._by_route: dict[str, CircuitBreaker] = {}

    def get(self, route_name: str) -> CircuitBreaker:
        breaker = self._by_route.get(route_name)
        if breaker is None:
            breaker = CircuitBreaker(route_name, self.policy)
            self._by_route[route_name] = breaker
        return breaker

    def state(self, route_name: str) -> BreakerState:
        breaker = self._by_route.get(route_name)
        return BreakerState.CLOSED if breaker is None else breaker.state
