"""HTTP request latency by route template, recorded by the edge middleware (request_id.py).

The label is the matched route's *template* (``/v1/jobs/{job_id}``), never the raw path, so
job ids cannot multiply the series. Starlette's router leaves the matched route in
``scope["route"]`` (the innermost one, for a mounted sub-application, whose static mount
prefix is then in ``scope["root_path"]``). A request no route matched is ``unmatched``; a
method outside the standard ones is ``OTHER``. Each (method, route, status) child of the
histogram is looked up once and kept, so a request costs two clock reads, a dict lookup and
one ``observe``. An exception that escapes the app is counted as a 500.
"""

from __future__ import annotations

from typing import Any

from prometheus_client import Histogram
from starlette.routing import Mount
from starlette.types import Scope

UNMATCHED = "unmatched"
METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})


def route_template(scope: Scope, entry_root: str) -> str:
    """The template of the route that handled ``scope`` (``entry_root``: its root_path on
    entering the app)."""
    route = scope.get("route")
    template = getattr(route, "path_format", None)
    if not isinstance(template, str):
        return UNMATCHED
    if isinstance(route, Mount):  # a mounted app matched no route of its own
        return template
    root = scope.get("root_path", "")
    prefix = root[len(entry_root) :] if root.startswith(entry_root) else ""
    return prefix + template


class HttpLatency:
    """Records one request's latency in the histogram, by method, route template, status."""

    def __init__(self, histogram: Histogram) -> None:
        self.histogram = histogram
        self._children: dict[tuple[str, str, int], Any] = {}

    def observe(self, scope: Scope, entry_root: str, status: int, seconds: float) -> None:
        method = scope["method"] if scope["method"] in METHODS else "OTHER"
        key = (method, route_template(scope, entry_root), status)
        child = self._children.get(key)
        if child is None:
            child = self._children[key] = self.histogram.labels(*map(str, key))
        child.observe(seconds)
