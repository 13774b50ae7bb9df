"""Circuit breakers, one per route: stop sending jobs to a route that keeps failing.

A breaker is *closed* (traffic flows) until the route fails ``failure_threshold`` times in a
row, or at least ``failure_ratio`` of at least ``min_calls`` calls within ``window_seconds``
fail. It then *opens*: the route is skipped for ``cooldown_seconds``. After the cooldown it is
*half-open*: one probe job goes through; its success closes the breaker, its failure opens it
again for another cooldown. Only provider faults count: a rejected input or a cancel says
nothing about the route's health.

Routes are not only the catalog's: a Tasks API token may name any fal app, and each gets a
breaker. ``Breakers`` keeps at most ``max_breakers`` of them by dropping, least recently used
first, the breakers whose loss forgets nothing that protects a route: closed, no probe out,
no failure within the window (a closed breaker's successes only ever delay its opening). An
open or half-open breaker, or one with a recent failure, is kept whatever the count, so no
pressure of new names lets a failing route be tried again early; those are bounded by how
many routes really failed lately. Callers look a breaker up again (``get``) each time they
use it, so a verdict is never recorded into a breaker already dropped.
"""

from __future__ import annotations

import logging
import time
from collections import OrderedDict, deque
from dataclasses import dataclass, field
from enum import StrEnum

log = logging.getLogger("backserv.breaker")

#: how many breakers ``Breakers`` keeps before it drops idle ones
MAX_BREAKERS = 1024


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
    last_failure_at: float | None = None
    _calls: deque[tuple[float, bool]] = field(default_factory=deque)

    def retry_at(self) -> float | None:
        """When an open breaker lets a probe through (None when not open)."""
        if self.state is BreakerState.OPEN and self.opened_at is not None:
            return self.opened_at + self.policy.cooldown_seconds
        return None

    def idle(self, now: float) -> bool:
        """Whether dropping this breaker (a new one is made when the route is used again)
        forgets nothing that keeps jobs from a failing route."""
        if self.state is not BreakerState.CLOSED or self.probe_in_flight:
            return False
        failed = self.last_failure_at
        return failed is None or now - failed > self.policy.window_seconds

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
            if not ok:
                self.last_failure_at = now
            if ok:
                self._close()
            else:
                self._open(now)
            return
        if ok:
            self.consecutive_failures = 0
            return
        self.last_failure_at = now
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
        self.last_failure_at = None
        self._calls.clear()
        self._move(BreakerState.CLOSED)

    def _move(self, state: BreakerState) -> None:
        if state is not self.state:
            log.warning("circuit breaker %s: %s -> %s", self.name, self.state, state)
            self.state = state


class Breakers:
    """The breakers of every route, created on first use; idle ones dropped past a cap."""

    def __init__(
        self, policy: BreakerPolicy | None = None, *, max_breakers: int = MAX_BREAKERS
    ) -> None:
        if max_breakers < 1:
            raise ValueError("max_breakers must be at least 1")
        self.policy = policy or BreakerPolicy()
        self.max_breakers = max_breakers
        self._by_route: OrderedDict[str, CircuitBreaker] = OrderedDict()

    @property
    def count(self) -> int:
        """How many breakers are kept. (Not ``__len__``: an empty registry would be falsy,
        and ``breakers or Breakers()`` would replace one passed in.)"""
        return len(self._by_route)

    def get(self, route_name: str, now: float | None = None) -> CircuitBreaker:
        breaker = self._by_route.get(route_name)
        if breaker is not None:
            self._by_route.move_to_end(route_name)
            return breaker
        breaker = CircuitBreaker(route_name, self.policy)
        self._by_route[route_name] = breaker
        if len(self._by_route) > self.max_breakers:
            self._drop_idle(time.monotonic() if now is None else now)
        return breaker

    def _drop_idle(self, now: float) -> None:
        """Drop idle breakers, least recently used first, down to the cap if it can be done
        (the newest, the one just made, is never dropped)."""
        excess = len(self._by_route) - self.max_breakers
        newest = next(reversed(self._by_route))
        idle: list[str] = []
        for name, breaker in self._by_route.items():
            if len(idle) == excess:
                break
            if name != newest and breaker.idle(now):
                idle.append(name)
        for name in idle:
            del self._by_route[name]

    def find(self, route_name: str) -> CircuitBreaker | None:
        """The route's breaker if it has one, without making one or marking it used."""
        return self._by_route.get(route_name)

    def state(self, route_name: str) -> BreakerState:
        breaker = self.find(route_name)
        return BreakerState.CLOSED if breaker is None else breaker.state
