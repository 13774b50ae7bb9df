"""The order a job tries its model's routes in: as listed, or, for a model whose routes are
interchangeable (``route_choice = "cheapest"`` in the catalog), the cheapest first.

For an interchangeable model the routes that can run now (``Availability``: configured,
circuit not open) come first, ranked by the job's estimated cost on each
(``gateway.pricing.estimate`` of its input; an unpriced route after every priced one), then
by typical latency (``RouteLatencies``: the median of this replica's recent successful
attempts on the route; a route without any after one with), then by their place in the
catalog. The routes that cannot run now follow, ranked the same way: the walk still passes
over them (or waits on their circuits) as it does for any chain.

A job resumed after a restart keeps what it already did: the routes it has attempted come
first, in the order it attempted them, and it carries on from the last one; only the rest
are ranked again.
"""

from __future__ import annotations

import statistics
from collections import OrderedDict, deque
from collections.abc import Mapping, Sequence
from typing import Any

from gateway.catalog import CatalogModel
from gateway.jobs import Attempt
from gateway.pricing import Price, estimate
from gateway.scheduler.availability import Availability

__all__ = ["RouteLatencies", "rank_routes", "walk_order"]


class RouteLatencies:
    """The last ``window`` successful attempt durations of each route, on this replica
    (bounded: at most ``routes`` routes are remembered, the least recently used forgotten)."""

    def __init__(self, *, window: int = 32, routes: int = 512) -> None:
        self.window = window
        self.routes = routes
        self._seconds: OrderedDict[str, deque[float]] = OrderedDict()

    def record(self, route: str, seconds: float) -> None:
        found = self._seconds.get(route)
        if found is None:
            found = self._seconds[route] = deque(maxlen=self.window)
            while len(self._seconds) > self.routes:
                self._seconds.popitem(last=False)
        else:
            self._seconds.move_to_end(route)
        found.append(max(0.0, seconds))

    def p50(self, route: str) -> float | None:
        """The median of the route's recent durations; None when it has none."""
        found = self._seconds.get(route)
        return statistics.median(found) if found else None


def rank_routes(
    model: CatalogModel,
    job_input: Mapping[str, Any],
    prices: Mapping[str, Price],
    availability: Availability | None = None,
    latencies: RouteLatencies | None = None,
) -> list[int]:
    """The indices of ``model.routes`` in the order a job of ``job_input`` tries them (see
    the module docstring). Without ``availability`` every route counts as able to run."""
    indices = list(range(len(model.routes)))
    if not model.interchangeable:
        return indices

    def key(index: int) -> tuple[bool, int, float, int]:
        route = model.routes[index]
        cost = estimate(prices.get(route.name), job_input)
        p50 = None if latencies is None else latencies.p50(route.name)
        return (cost is None, cost or 0, float("inf") if p50 is None else p50, index)

    def ready(index: int) -> bool:
        return availability is None or availability.check(model.routes[index]).ready

    now = [i for i in indices if ready(i)]
    later = [i for i in indices if i not in now]
    return sorted(now, key=key) + sorted(later, key=key)


def walk_order(
    model: CatalogModel,
    job_input: Mapping[str, Any],
    attempts: Sequence[Attempt],
    prices: Mapping[str, Price],
    availability: Availability | None = None,
    latencies: RouteLatencies | None = None,
) -> tuple[list[int], int]:
    """``(order, start)``: the indices of ``model.routes`` in the order the job walks them,
    and the place in it where its walk (re)starts: the route of its last attempt."""
    if not model.interchangeable:
        return list(range(len(model.routes))), attempts[-1].route_index if attempts else 0
    tried: list[int] = []
    for attempt in attempts:
        if attempt.route_index < len(model.routes) and attempt.route_index not in tried:
            tried.append(attempt.route_index)
    ranked = rank_routes(model, job_input, prices, availability, latencies)
    order = tried + [i for i in ranked if i not in tried]
    if not attempts:
        return order, 0
    last = attempts[-1].route_index
    return order, order.index(last) if last in tried else len(order)
