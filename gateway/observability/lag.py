"""Event-loop lag, measured from inside: how late a timer fires is how long every request,
poll and delivery waited for the loop at that moment.

``LagMonitor`` sleeps ``interval`` seconds at a time and records by how much each sleep
overran into ``backserv_event_loop_lag_seconds`` (a histogram); a loop blocked by a slow
callback, or saturated by requests, shows there before clients time out.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time

from prometheus_client import Histogram

log = logging.getLogger("backserv")

LAG_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5)


class LagMonitor:
    def __init__(self, histogram: Histogram, interval: float = 0.25) -> None:
        self.histogram = histogram
        self.interval = interval
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._supervised(), name="loop-lag")

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _supervised(self) -> None:
        while True:
            try:
                await self._measure()
            except asyncio.CancelledError:
                raise
            except Exception:  # a metric must never stop: log, and measure again
                log.exception("event-loop lag measurement failed; measuring again")
                await asyncio.sleep(self.interval)

    async def _measure(self) -> None:
        while True:
            started = time.perf_counter()
            await asyncio.sleep(self.interval)
            self.histogram.observe(max(0.0, time.perf_counter() - started - self.interval))
