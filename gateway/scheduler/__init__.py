"""The scheduler: everything that runs accepted jobs, from the claim to the final write.

- ``loop``: the ``Scheduler`` — claims QUEUED jobs per lane within its concurrency, holds
  their leases (heartbeats), hands expired leases back (recovery), shuts down cleanly.
- ``runner``: the ``JobRunner`` — one claimed job: walks its route chain, submits, follows
  the provider, records every ``Attempt``, stores the result files.
- ``choice``: ``walk_order`` — the order a job tries its routes in: as listed, or for
  interchangeable routes the cheapest that can run now first (then the fastest).
- ``summary``: ``summarise`` — a failed job's error: every route of its chain, primary
  first, each with its own cause.
- ``timeouts``: ``RouteClock`` — how long one route may take before the next one runs.
- ``retry``: the ``RetryPolicy`` — whether and when to retry a route after an error.
- ``breaker``: ``Breakers`` and their ``BreakerPolicy`` — one circuit breaker per route.
- ``availability``: ``Availability`` — the one rule for "can this route run now?", used by
  the runner, the catalog pages and submits.
- ``janitor``: the ``Janitor`` — retention: deletes expired result files and job records.
"""

from __future__ import annotations

from gateway.scheduler.availability import Availability
from gateway.scheduler.breaker import BreakerPolicy, Breakers
from gateway.scheduler.janitor import Janitor
from gateway.scheduler.loop import Scheduler
from gateway.scheduler.retry import RetryPolicy
from gateway.scheduler.runner import JobRunner

__all__ = [
    "Availability",
    "BreakerPolicy",
    "Breakers",
    "Janitor",
    "JobRunner",
    "RetryPolicy",
    "Scheduler",
]
