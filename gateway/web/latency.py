"""Typical latency per model: the median time from submission to result of this gateway's
own recently completed jobs, as the catalog shows it.

One read of the store (the last ``window`` completions of every owner, through an index)
serves every model, and the answer is kept for ``ttl`` seconds, so a busy catalog page
costs the database one small query a minute. Only durations leave the store: no input, no
output, no owner.
"""

from __future__ import annotations

import asyncio
import statistics
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

Source = Callable[[int], Awaitable[list[tuple[str, float]]]]


@dataclass(frozen=True)
class Latency:
    p50: float
    jobs: int

    @property
    def text(self) -> str:
        """ "0.8 s", "12 s", "3 min 5 s"."""
        s = self.p50
        if s < 10:
            return f"{s:.1f} s"
        if s < 60:
            return f"{round(s)} s"
        minutes, seconds = divmod(round(s), 60)
        return f"{minutes} min {seconds} s" if seconds else f"{minutes} min"


class Latencies:
    def __init__(
        self,
        source: Source,
        *,
        window: int = 500,
        ttl: float = 60.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.source = source
        self.window = window
        self.ttl = ttl
        self.clock = clock
        self._value: dict[str, Latency] = {}
        self._expires = float("-inf")
        self._lock = asyncio.Lock()

    async def by_model(self) -> dict[str, Latency]:
        if self.clock() < self._expires:
            return self._value
        async with self._lock:  # one read refreshes it for every waiting page
            if self.clock() >= self._expires:
                self._value = summarise(await self.source(self.window))
                self._expires = self.clock() + self.ttl
        return self._value


def summarise(rows: list[tuple[str, float]]) -> dict[str, Latency]:
    seconds: dict[str, list[float]] = {}
    for model, value in rows:
        seconds.setdefault(model, []).append(max(0.0, value))
    return {m: Latency(statistics.median(v), len(v)) for m, v in seconds.items()}
