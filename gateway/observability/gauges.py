"""Values read when Prometheus scrapes: queue depth, in-flight jobs, circuit breakers, and
the providers' status reads (a counter each provider keeps: providers/polls.py).

Nothing here is updated as jobs move; each value is read from its owner at scrape time. The
one value that costs a database query (the jobs QUEUED and PROCESSING per lane, across every
replica) is cached for ``count_ttl`` seconds and refreshed before a scrape renders, so a
scraper polling every second, or several scrapers, read the database at most once per TTL.
A failed count keeps the last values (and logs): a slow database must not fail the scrape.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Iterable

from prometheus_client.metrics_core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from gateway.catalog import Catalog
from gateway.jobs import Status
from gateway.scheduler.breaker import Breakers, BreakerState
from gateway.scheduler.loop import Scheduler
from gateway.store.base import JobStore

log = logging.getLogger("backserv.metrics")

#: the value of ``backserv_breaker_state`` for each state
BREAKER_VALUES = {BreakerState.CLOSED: 0, BreakerState.HALF_OPEN: 1, BreakerState.OPEN: 2}
COUNT_TIMEOUT = 2.0


class GatewayState(Collector):
    """A collector of the gauges whose values live elsewhere (store, scheduler, breakers)."""

    def __init__(
        self,
        store: JobStore,
        scheduler: Scheduler,
        breakers: Breakers,
        catalog: Catalog,
        *,
        count_ttl: float = 1.5,
    ) -> None:
        self.store = store
        self.scheduler = scheduler
        self.breakers = breakers
        self.route_names = sorted({r.name for m in catalog for r in m.routes})
        self.count_ttl = count_ttl
        self._counts: dict[tuple[Status, str], int] = {}
        self._counted_at = -float("inf")
        self._lock = asyncio.Lock()

    async def refresh(self) -> None:
        """Re-read the job counts if the cached ones are older than ``count_ttl``."""
        if time.monotonic() - self._counted_at < self.count_ttl:
            return
        async with self._lock:  # concurrent scrapes share one query
            if time.monotonic() - self._counted_at < self.count_ttl:
                return
            try:
                counts = await asyncio.wait_for(
                    self.store.count_by_status_and_lane(), COUNT_TIMEOUT
                )
            except Exception as exc:
                log.warning("metrics: counting jobs failed (%s); keeping the last counts", exc)
                return
            self._counts = counts
            self._counted_at = time.monotonic()

    def collect(self) -> Iterable[Metric]:
        lanes = sorted(set(self.scheduler.lanes) | {lane for _, lane in self._counts})
        queued = GaugeMetricFamily(
            "backserv_queue_depth",
            "Jobs QUEUED per provider lane, across every replica (cached for a second or two).",
            labels=["provider"],
        )
        processing = GaugeMetricFamily(
            "backserv_jobs_processing",
            "Jobs PROCESSING per provider lane, across every replica (cached likewise).",
            labels=["provider"],
        )
        inflight = GaugeMetricFamily(
            "backserv_inflight_jobs",
            "Jobs this replica's scheduler is running now, per provider lane.",
            labels=["provider"],
        )
        limit = GaugeMetricFamily(
            "backserv_provider_concurrency_limit",
            "How many jobs of a provider lane one replica runs at once.",
            labels=["provider"],
        )
        for lane in lanes:
            queued.add_metric([lane], self._counts.get((Status.QUEUED, lane), 0))
            processing.add_metric([lane], self._counts.get((Status.PROCESSING, lane), 0))
            inflight.add_metric([lane], self.scheduler.inflight(lane))
            limit.add_metric([lane], self.scheduler.limit(lane))
        breaker = GaugeMetricFamily(
            "backserv_breaker_state",
            "Circuit breaker of each catalog route: 0 closed, 1 half-open, 2 open.",
            labels=["route"],
        )
        for name in self.route_names:
            breaker.add_metric([name], BREAKER_VALUES[self.breakers.state(name)])
        polls = CounterMetricFamily(
            "backserv_provider_polls",
            "Status reads (polls) of provider requests this replica made.",
            labels=["provider"],
        )
        for name, provider in sorted(self.scheduler.runner.providers.items()):
            polls.add_metric([name], provider.poll_counts.total)
        return [queued, processing, inflight, limit, breaker, polls]
