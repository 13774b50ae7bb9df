"""The access log (``BACKSERV_ACCESS_LOG=true``): one INFO line per HTTP request answered.

On the ``backserv.access`` logger, after the response was sent (or the request failed),
with the fields ``method``, ``path`` (without its query string: a token may ride in it),
``status`` (500 for a request that raised, 499 for one whose client left first),
``duration_ms`` and ``client``, and the ``request_id`` every line carries. It is ours rather
than uvicorn's, whose line is written outside the request (so without its request id).
A pure ASGI middleware: off, it is not installed at all.
"""

from __future__ import annotations

import asyncio
import logging
import time

from starlette.types import ASGIApp, Message, Receive, Scope, Send

__all__ = ["AccessLogMiddleware"]

log = logging.getLogger("backserv.access")


class AccessLogMiddleware:
    def __init__(self, app: ASGIApp, logger: logging.Logger = log) -> None:
        self.app = app
        self.log = logger

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500

        async def watch(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, watch)
        except asyncio.CancelledError:
            status = 499
            raise
        finally:
            self._line(scope, status, time.perf_counter() - started)

    def _line(self, scope: Scope, status: int, seconds: float) -> None:
        client = scope.get("client")
        method, path = scope.get("method", ""), scope.get("path", "")
        self.log.info(
            "%s %s %d %.1fms",
            method,
            path,
            status,
            seconds * 1000,
            extra={
                "method": method,
                "path": path,
                "status": status,
                "duration_ms": round(seconds * 1000, 2),
                "client": None if not client else f"{client[0]}:{client[1]}",
                "request_id": (scope.get("state") or {}).get("request_id"),
            },
        )
