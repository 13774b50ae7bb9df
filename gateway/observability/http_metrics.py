"""HTTP request latency by route template: a pure ASGI middleware, cheap on the hot paths.

The label is the matched route's *template* (``/v1/jobs/{job_id}``), never the raw path, so
job ids cannot multiply the series. Starlette's router leaves the matched route in
``scope["route"]`` (the innermost one, for a mounted sub-application, whose static mount
prefix is then in ``scope["root_path"]``). A request no route matched is ``unmatched``; a
method outside the standard ones is ``OTHER``. Each (method, route, status) child of the
histogram is looked up once and kept, so a request costs two clock reads, a dict lookup and
one ``observe``.
"""

from __future__ import annotations

import time
from typing import Any

from prometheus_client import Histogram
from starlette.routing import Mount
from starlette.types import ASGIApp, Message, Receive, Scope, Send

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


class HttpMetricsMiddleware:
    def __init__(self, app: ASGIApp, histogram: Histogram) -> None:
        self.app = app
        self.histogram = histogram
        self._children: dict[tuple[str, str, int], Any] = {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        entry_root = scope.get("root_path", "")
        status = 500  # unless a response starts: an exception escaped the app

        async def send_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_status)
        finally:
            method = scope["method"] if scope["method"] in METHODS else "OTHER"
            key = (method, route_template(scope, entry_root), status)
            child = self._children.get(key)
            if child is None:
                child = self._children[key] = self.histogram.labels(*map(str, key))
            child.observe(time.perf_counter() - started)
