"""The operations face: ``GET /healthz``, ``GET /readyz`` and ``GET /metrics`` (no API key).

- ``/healthz``: the process is alive and serving (no dependency is checked).
- ``/readyz``: 200 ``{"status": "ready", ...}`` when the database answers, the scheduler runs
  and at least one catalog model has a route whose provider is configured; else 503 with
  ``failed`` naming the checks that failed. Routes whose provider lacks credentials are
  listed under ``providers`` as a warning, not a failure: readiness takes a whole replica in
  or out of the load balancer, and one hosted model without its key must not stop the models
  that work (a submit to that model is refused with 503 ``model_unavailable`` anyway).
- ``/metrics``: Prometheus exposition of this app's registry (``gateway/metrics.py``);
  with ``BACKSERV_METRICS_TOKEN`` set it asks for ``Authorization: Bearer <token>``.
"""

from __future__ import annotations

import asyncio
import hmac
from dataclasses import dataclass, field
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from gateway.api.common import json
from gateway.catalog import Catalog
from gateway.metrics import Metrics
from gateway.scheduler.loop import Scheduler
from gateway.store.base import JobStore
from providers.base import Provider

DATABASE_TIMEOUT = 2.0


@dataclass
class CredentialReport:
    """Which catalog routes cannot run for want of a provider or its credentials."""

    models: int = 0
    #: {"model", "route", "reason"} for each route that cannot run
    routes_unavailable: list[dict[str, str]] = field(default_factory=list)
    #: models none of whose routes can run
    models_unavailable: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """At least one model can run."""
        return self.models > len(self.models_unavailable)


def credential_report(catalog: Catalog, providers: dict[str, Provider]) -> CredentialReport:
    report = CredentialReport(models=len(catalog))
    for model in catalog:
        usable = False
        for route in model.routes:
            provider = providers.get(route.provider)
            reason: str | None
            if provider is None:
                ok, reason = False, f"the '{route.provider}' provider is not enabled"
            else:
                ok, reason = provider.availability(route)
            usable = usable or ok
            if not ok:
                report.routes_unavailable.append(
                    {"model": model.id, "route": route.name, "reason": reason or "unavailable"}
                )
        if not usable:
            report.models_unavailable.append(model.id)
    return report


class HealthAPI:
    def __init__(
        self,
        store: JobStore,
        scheduler: Scheduler,
        catalog: Catalog,
        providers: dict[str, Provider],
        *,
        metrics: Metrics | None = None,
        metrics_token: str | None = None,
    ) -> None:
        self.store = store
        self.scheduler = scheduler
        self.catalog = catalog
        self.providers = providers
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
        checks: dict[str, Any] = {"scheduler": self.scheduler.running}
        try:
            await asyncio.wait_for(self.store.get_meta("secret_key"), DATABASE_TIMEOUT)
            checks["database"] = True
        except Exception as exc:
            checks["database"] = False
            checks["database_error"] = type(exc).__name__
        report = credential_report(self.catalog, self.providers)
        checks["providers"] = report.ok
        failed = [name for name in ("database", "scheduler", "providers") if not checks[name]]
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
