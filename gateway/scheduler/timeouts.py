"""How long one route of a job's chain may take before the next route is tried.

The job's own limit (``BACKSERV_JOB_TIMEOUT_SECONDS``) bounds the whole chain; without a
bound per route, a provider that accepts a request and never finishes it would hold the job
until then, and its fallbacks would never run. A route's limit is its catalog option
``timeout_seconds``, or else the default (``BACKSERV_ROUTE_TIMEOUT_SECONDS``) for a route
that has a fallback after it: the last route of a chain has nothing to hand over to, so by
default only the job's limit bounds it. The clock of a route starts at its first attempt
(retries on it count), and a job resumed after a restart, its request still open, keeps
the time already spent.
"""

from __future__ import annotations

from collections.abc import Sequence

from gateway.errors import ProviderUnavailable
from gateway.jobs import Attempt
from providers.base import RouteSpec
from providers.options import ROUTE_TIMEOUT_OPTION, check_route_timeout

__all__ = ["RouteClock"]


class RouteClock:
    """The deadline of one route of one job's chain: ``index`` is its index in the chain,
    ``fallback`` whether another route follows it in the job's walk."""

    def __init__(
        self,
        route: RouteSpec,
        *,
        index: int,
        fallback: bool,
        attempts: Sequence[Attempt],
        job_deadline: float,
        default: float | None,
        now: float,
    ) -> None:
        own = route.options.get(ROUTE_TIMEOUT_OPTION)
        if own is not None and check_route_timeout(own) is None:  # the catalog checked it
            limit: float | None = float(own)
        else:
            limit = default if fallback else None
        started = _started(attempts, index, route.name, now)
        self.limit = limit
        self.at = job_deadline if limit is None else min(job_deadline, started + limit)
        #: whether the route's own limit, not the job's, ends this route
        self.own = limit is not None and started + limit < job_deadline

    def expired(self, route: RouteSpec) -> ProviderUnavailable:
        """The error of an attempt that reached this deadline."""
        if self.own:
            return ProviderUnavailable(
                f"{route.name} did not finish within its route timeout of {self.limit:g} s; "
                "the request was cancelled",
                code="route_timeout",
            )
        return ProviderUnavailable("the job did not finish within the time limit", code="timeout")


def _started(attempts: Sequence[Attempt], index: int, name: str, now: float) -> float:
    """When the job's stay on route ``index`` began: for a job resumed with an attempt still
    open there (after a restart), the first of its latest run of attempts on the route;
    otherwise ``now``."""
    if not attempts or not attempts[-1].open:
        return now
    started = now
    for attempt in reversed(attempts):
        if attempt.route_index != index or attempt.route != name:
            break
        started = attempt.started_at
    return started
