"""At most so many HTTP calls to one hosted provider in flight at once, per event loop.

Thousands of jobs may be in flight at a provider (their runs take seconds), and each polls.
Handed to httpx all at once, the calls queue inside its connection pool, whose bookkeeping
grows with the square of the queue: at 10,000 jobs the event loop spent seconds in it (see
bench/RESULTS.md, target 4). A semaphore in front keeps that queue short (the pool has more
connections than the gate lets through), so waiting costs nothing but a place in line.

A call waits for the gate *before* its timeout starts: a submit that never left because the
gate was full is not an uncertain submit. Submits have a gate of their own (``submits``), so
a new job never waits behind the status polls of thousands of running ones.
"""

from __future__ import annotations

import asyncio

from gateway.errors import ConfigError

#: below httpx's default pool of 100 connections, so calls never queue inside the pool
DEFAULT_CALLS = 64


class CallGate:
    def __init__(self, limit: int = DEFAULT_CALLS, name: str = "provider") -> None:
        if limit < 1:
            raise ConfigError(f"{name}: at least 1 HTTP call must be allowed at once.")
        self.limit = limit
        self._gates: dict[asyncio.AbstractEventLoop, asyncio.Semaphore] = {}

    @classmethod
    def pair(cls, limit: int, name: str) -> tuple[CallGate, CallGate]:
        """A gate for submits and one for every other call, sharing ``limit`` (at least 2)
        between them: a quarter (at least 1) for submits."""
        if limit < 2:
            raise ConfigError(f"{name}: at least 2 HTTP calls must be allowed at once.")
        submits = max(1, limit // 4)
        return cls(submits, name), cls(limit - submits, name)

    def __call__(self) -> asyncio.Semaphore:
        """The running loop's semaphore: ``async with gate():`` around one call."""
        loop = asyncio.get_running_loop()
        gate = self._gates.get(loop)
        if gate is None:
            for stale in [other for other in self._gates if other.is_closed()]:
                del self._gates[stale]
            gate = self._gates[loop] = asyncio.Semaphore(self.limit)
        return gate
