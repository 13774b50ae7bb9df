"""The operations face: ``GET /healthz``, ``GET /readyz`` and ``GET /metrics`` (no API key).

- ``/healthz``: the process is alive and serving (no dependency is checked).
- ``/readyz``: 200 ``{"status": "ready", ...}`` when the database answers, the scheduler runs,
  the result storage takes a write (a bucket: a probe object written, read back and
  deleted, at most once per ``STORAGE_CHECK_SECONDS``; its error under ``storage_error``)
  and at least one catalog model has a route whose provider is configured; else 503 with
  ``failed`` naming the checks that failed. Routes whose provider lacks credentials are
  listed under ``providers`` as a warning, not a failure: readiness takes a whole replica in
  or out of the load balancer, and one hosted model without its key must not stop the models
  that work (a submit to that model is refused with 503 ``model_unavailable`` anyway).
- ``/metrics``: Prometheus exposition of this app's registry (``gateway/observability/metrics.py``);
  with ``BACKSERV_METRICS_TOKEN`` set it asks for ``Authorization: Bearer <token>``.
"""

from __future__ import annotations

import asyncio
import hmac
import time
from collections.abc import Awaitable, Callable
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from gateway.api.common import json
from gateway.errors import GatewayError
from gateway.observability.metrics import Metrics
from gateway.scheduler.availability import CredentialReport

DATABASE_TIMEOUT = 2.0
STORAGE_TIMEOUT = 5.0
#: how long a storage verdict is reused: a load balancer's probes do not each write an object
STORAGE_CHECK_SECONDS = 15.0


class HealthAPI:
    """``ping`` reads the database (any answer will do); ``scheduler_running`` tells whether
    the scheduler loop runs; ``report`` which catalog routes cannot run for want of a
    provider or its credentials."""

    def __init__(
        self,
        ping: Callable[[], Awaitable[object]],
        scheduler_running: Callable[[], bool],
        report: Callable[[], CredentialReport],
        storage_check: Callable[[], Awaitable[str]] | None = None,
        *,
        metrics: Metrics | None = None,
        metrics_token: str | None = None,
    ) -> None:
        self.ping = ping
        self.scheduler_running = scheduler_running
        self.report = report
        self.storage_check = storage_check
        self._storage_verdict: tuple[float, str | None] | None = None
        self._storage_lock = asyncio.Lock()
        self.metrics = metrics
        self._token = None if not metrics_token else f"Bearer {metrics_token}".encode()

    def routes(self) -> list[BaseRoute]:
        routes: list[BaseRoute] = [
            Route("/healthz", self.healthz, methods=["GET"]),
            Route("/readyz", self.readyz, methods=["GET"]),
        ]
        if self.metrics is not None:
            routes.append(Route("/metrics", self.metrics_endpoint, methods=["GET"]))
        return routes

    async def healthz(self, request: Request) -> Response:
        return json({"status": "ok"})

    async def readyz(self, request: Request) -> Response:
        checks: dict[str, Any] = {"scheduler": self.scheduler_running()}
        try:
            await asyncio.wait_for(self.ping(), DATABASE_TIMEOUT)
            checks["database"] = True
        except Exception as exc:
            checks["database"] = False
            checks["database_error"] = type(exc).__name__
        storage_error = await self._storage_error()
        checks["storage"] = storage_error is None
        if storage_error is not None:
            checks["storage_error"] = storage_error
        report = self.report()
        checks["providers"] = report.ok
        names = ("database", "scheduler", "storage", "providers")
        failed = [name for name in names if not checks[name]]
        body = {
            "status": "not_ready" if failed else "ready",
            "checks": checks,
            "failed": failed,
            "providers": {
                "routes_unavailable": report.routes_unavailable,
                "models_unavailable": report.models_unavailable,
            },
        }
        return json(body, 503 if failed else 200)

    async def _storage_error(self) -> str | None:
        """Why the result storage cannot be written (None: it can), reused for a while."""
        if self.storage_check is None:
            return None
        async with self._storage_lock:  # probes arriving together share one check
            now = time.monotonic()
            if self._storage_verdict is not None and now < self._storage_verdict[0]:
                return self._storage_verdict[1]
            error: str | None = None
            try:
                await asyncio.wait_for(self.storage_check(), STORAGE_TIMEOUT)
            except GatewayError as exc:
                error = exc.message
            except TimeoutError:
                error = f"no answer within {STORAGE_TIMEOUT:g} s"
            except Exception as exc:
                error = type(exc).__name__
            self._storage_verdict = (time.monotonic() + STORAGE_CHECK_SECONDS, error)
            return error

    async def metrics_endpoint(self, request: Request) -> Response:
        if self.metrics is None:  # the route is only made with metrics; this narrows the type
            return Response(status_code=404)
        if self._token is not None:
            given = request.headers.get("authorization", "").encode()
            if not hmac.compare_digest(given, self._token):
                return Response(
                    "metrics need 'Authorization: Bearer <BACKSERV_METRICS_TOKEN>'\n",
                    status_code=401,
                    media_type="text/plain",
                    headers={"WWW-Authenticate": "Bearer"},
                )
        body, content_type = await self.metrics.render(request.headers.get("accept"))
        return Response(body, media_type=content_type)
