"""Event-loop lag, measured from inside: how late a timer fires is how long every request,
poll and delivery waited for the loop at that moment.

``LagMonitor`` sleeps ``interval`` seconds at a time and records by how much each sleep
overran into ``backserv_event_loop_lag_seconds`` (a histogram); a loop blocked by a slow
callback, or saturated by requests, shows there before clients time out.
"""

from __future__ import annotations

import asyncio
import time

from prometheus_client import Histogram

from gateway.background import BackgroundLoop

LAG_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5)


class LagMonitor(BackgroundLoop):
    name = "loop-lag"

    def __init__(self, histogram: Histogram, interval: float = 0.25) -> None:
        super().__init__(0.0)
        self.histogram = histogram
        self.period = interval

    async def step(self) -> None:
        started = time.perf_counter()
        await asyncio.sleep(self.period)
        self.histogram.observe(max(0.0, time.perf_counter() - started - self.period))
