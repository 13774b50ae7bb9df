"""Prometheus metrics of one gateway app, in a registry of its own (``GET /metrics``).

Every app gets its own ``CollectorRegistry``, never prometheus-client's global one, so
several apps in one process (the tests) never collide, and nothing is registered at import.

``Metrics`` is the ``JobObserver`` the core calls as jobs move (counters and histograms),
plus the gauges read at scrape time (``gauges.GatewayState``) and the HTTP latency
histogram the ASGI middleware feeds (``http_metrics``). The metric families:

==========================================  ============================================
backserv_jobs_submitted_total               model, kind, provider (the job's lane)
backserv_jobs_finished_total                model, kind, provider, status
backserv_queue_time_seconds                 provider: created -> first claim
backserv_provider_latency_seconds           provider, outcome: submit -> verdict
backserv_retries_total                      provider, route
backserv_fallbacks_total                    model, route (the fallback route taken)
backserv_spend_total                        model, provider, currency: what finished jobs cost
backserv_queue_depth                        provider: QUEUED jobs, every replica
backserv_jobs_processing                    provider: PROCESSING jobs, every replica
backserv_inflight_jobs                      provider: this replica's running jobs
backserv_provider_concurrency_limit         provider
backserv_breaker_state                      route: 0 closed, 1 half-open, 2 open
backserv_http_request_duration_seconds      method, route (the template), status
backserv_provider_webhooks_received_total   provider: deliveries at the ingress route
backserv_provider_webhooks_total            provider, outcome: verified, rejected, error
backserv_provider_ends_total                provider, via: how a request's end was learned
backserv_provider_polls_total               provider: status reads (read at scrape time)
backserv_provider_polls_per_job             provider: status reads of one attempt's request
==========================================  ============================================

A finished job's ``provider`` is the provider of its last attempt (the one that produced the
outcome), or its lane when it never reached one (e.g. cancelled while QUEUED). Labels are
bounded: models and routes come from the catalog (a route outside it is ``other``), HTTP
routes are templates, never raw paths.
"""

from __future__ import annotations

from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram, ProcessCollector
from prometheus_client.exposition import choose_encoder

from gateway.catalog import Catalog
from gateway.jobs import Job, Status
from gateway.observability.gauges import GatewayState
from gateway.observability.lag import LAG_BUCKETS
from gateway.observability.observer import JobObserver
from gateway.pricing import money
from gateway.scheduler.breaker import Breakers
from gateway.scheduler.loop import Scheduler
from gateway.spend import job_usage
from gateway.store.base import JobStore

#: generation takes seconds to many minutes
LATENCY_BUCKETS = (0.1, 0.25, 0.5, 1, 2.5, 5, 10, 20, 30, 60, 120, 300, 600, 1800, 3600)
QUEUE_BUCKETS = (0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 3600)
POLL_BUCKETS = (0, 1, 2, 3, 5, 10, 20, 50, 100, 200, 500, 1000)
HTTP_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)
OTHER_ROUTE = "other"


class Metrics(JobObserver):
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        self.state: GatewayState | None = None
        self._routes: frozenset[str] = frozenset()
        self._submitted: dict[tuple[str, str, str], Any] = {}
        r = self.registry
        self.submitted = Counter(
            "backserv_jobs_submitted",
            "Jobs stored QUEUED (idempotent replays excluded).",
            ["model", "kind", "provider"],
            registry=r,
        )
        self.finished = Counter(
            "backserv_jobs_finished",
            "Jobs this replica moved to a terminal status.",
            ["model", "kind", "provider", "status"],
            registry=r,
        )
        self.spend = Counter(
            "backserv_spend",
            "What finished jobs cost, in the catalog's currency (priced attempts, a billed "
            "failure included), by the model and the provider of each attempt.",
            ["model", "provider", "currency"],
            registry=r,
        )
        self.queue_time = Histogram(
            "backserv_queue_time_seconds",
            "Time from a job's creation to its first claim by a scheduler.",
            ["provider"],
            buckets=QUEUE_BUCKETS,
            registry=r,
        )
        self.provider_latency = Histogram(
            "backserv_provider_latency_seconds",
            "Time from an attempt's submit to the provider's verdict (succeeded or failed).",
            ["provider", "outcome"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.retries = Counter(
            "backserv_retries",
            "Retries of a route after a retryable failure.",
            ["provider", "route"],
            registry=r,
        )
        self.fallbacks = Counter(
            "backserv_fallbacks",
            "Moves of a job on to a fallback route.",
            ["model", "route"],
            registry=r,
        )
        # process_cpu_seconds_total, resident memory, open descriptors: this process's
        ProcessCollector(registry=r)
        self.loop_lag = Histogram(
            "backserv_event_loop_lag_seconds",
            "How late a 0.25 s timer of the event loop fired (gateway/observability/lag.py).",
            buckets=LAG_BUCKETS,
            registry=r,
        )
        self.provider_webhooks = Counter(
            "backserv_provider_webhooks",
            "Webhook deliveries from hosted providers, by outcome (verified, rejected, error).",
            ["provider", "outcome"],
            registry=r,
        )
        self.webhooks_arrived = Counter(
            "backserv_provider_webhooks_received",
            "Webhook deliveries that reached a hosted provider's ingress route (each then "
            "counts once in backserv_provider_webhooks_total by its outcome).",
            ["provider"],
            registry=r,
        )
        self.provider_ends = Counter(
            "backserv_provider_ends",
            "Provider requests whose end the runner learned, via a webhook or a poll.",
            ["provider", "via"],
            registry=r,
        )
        self.polls_per_job = Histogram(
            "backserv_provider_polls_per_job",
            "Status reads of one attempt's provider request, observed when the attempt ends.",
            ["provider"],
            buckets=POLL_BUCKETS,
            registry=r,
        )
        self.http_latency = Histogram(
            "backserv_http_request_duration_seconds",
            "HTTP request latency, by route template.",
            ["method", "route", "status"],
            buckets=HTTP_BUCKETS,
            registry=r,
        )

    def watch(
        self, *, store: JobStore, scheduler: Scheduler, breakers: Breakers, catalog: Catalog
    ) -> None:
        """Register the scrape-time gauges of this app's store, scheduler and breakers."""
        self._routes = frozenset(r.name for m in catalog for r in m.routes)
        self.state = GatewayState(store, scheduler, breakers, catalog)
        self.registry.register(self.state)

    async def render(self, accept: str | None) -> tuple[bytes, str]:
        """The exposition for a scrape (text format, or OpenMetrics when asked for), and its
        content type. Refreshes the cached job counts first."""
        if self.state is not None:
            await self.state.refresh()
        encode, content_type = choose_encoder(accept or "")
        return encode(self.registry), content_type

    def _route(self, name: str) -> str:
        return name if name in self._routes else OTHER_ROUTE

    # -- JobObserver ------------------------------------------------------------------------

    def job_submitted(self, job: Job) -> None:
        key = (job.model, job.kind, job.lane)
        counter = self._submitted.get(key)
        if counter is None:  # prometheus_client's labels() costs more than the inc() itself
            counter = self._submitted[key] = self.submitted.labels(*key)
        counter.inc()

    def job_finished(self, job: Job, status: Status) -> None:
        provider = job.provider or job.lane
        self.finished.labels(job.model, job.kind, provider, status.value).inc()
        currency = job_usage(job).currency
        for attempt in job.attempts:
            if attempt.priced and attempt.charge > 0:
                self.spend.labels(job.model, attempt.provider, currency).inc(money(attempt.charge))

    def job_claimed(self, job: Job) -> None:
        if job.lease_token == 1 and job.started_at is not None:  # the first claim
            self.queue_time.labels(job.lane).observe(max(0.0, job.started_at - job.created_at))

    def provider_done(self, provider: str, outcome: str, seconds: float) -> None:
        self.provider_latency.labels(provider, outcome).observe(max(0.0, seconds))

    def retried(self, job: Job, provider: str, route: str) -> None:
        self.retries.labels(provider, self._route(route)).inc()

    def webhook_received(self, provider: str, outcome: str) -> None:
        self.provider_webhooks.labels(provider, outcome).inc()

    def webhook_arrived(self, provider: str) -> None:
        self.webhooks_arrived.labels(provider).inc()

    def provider_ended(self, provider: str, via: str) -> None:
        self.provider_ends.labels(provider, via).inc()

    def provider_polled(self, provider: str, polls: int) -> None:
        self.polls_per_job.labels(provider).observe(polls)

    def fell_back(self, job: Job, route: str) -> None:
        self.fallbacks.labels(job.model, self._route(route)).inc()
