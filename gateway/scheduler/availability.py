"""Which routes of a model can run now, and why not: the one rule, for the runner, the
catalog pages and submits.

A route is *ready* when it is *configured* (its provider is enabled and can run it: the
credentials are there, the model directory exists, ...) and its circuit *admits* a job
(not open after repeated failures). ``Availability.check`` answers for one route; the
catalog's view (``routes``) and the submit check (``require_configured``) read it, and the
runner asks it with ``claim=True``, which takes a half-open circuit's one probe.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from gateway.catalog import CatalogModel
from gateway.errors import ModelUnavailable
from gateway.scheduler.breaker import Breakers, BreakerState, CircuitBreaker
from providers.base import Provider, RouteSpec


@dataclass(frozen=True)
class RouteCheck:
    """Whether one route can run now, and why not."""

    #: the route's provider; None when no provider of that name is enabled
    provider: Provider | None
    #: the provider is enabled and can run the route
    configured: bool
    #: why the route is not configured (a provider may give no reason)
    reason: str | None
    #: the route's circuit, as the check left it
    circuit: BreakerState
    #: the circuit lets a job through
    admitted: bool
    #: when an open circuit lets a probe through (``time.monotonic``); None when not open
    reopens_at: float | None = None

    @property
    def ready(self) -> bool:
        """The route can run now."""
        return self.configured and self.admitted


class Availability:
    def __init__(self, providers: dict[str, Provider], breakers: Breakers) -> None:
        self.providers = providers
        self.breakers = breakers

    def check(self, route: RouteSpec, *, claim: bool = False) -> RouteCheck:
        """Can ``route`` run now? With ``claim`` (a job is about to use it) the circuit is
        asked to admit the job, which moves a cooled-down open circuit to half-open and takes
        its one probe; without, the circuit is only looked at."""
        provider = self.providers.get(route.provider)
        reason: str | None
        if provider is None:
            configured, reason = False, f"the '{route.provider}' provider is not enabled"
        else:
            configured, reason = provider.availability(route)
        if claim and configured:
            breaker: CircuitBreaker | None = self.breakers.get(route.name)
            admitted = breaker is not None and breaker.allow()
        else:
            breaker = self.breakers.find(route.name)
            admitted = breaker is None or breaker.state is not BreakerState.OPEN
        if breaker is None:
            return RouteCheck(provider, configured, reason, BreakerState.CLOSED, admitted)
        return RouteCheck(provider, configured, reason, breaker.state, admitted, breaker.retry_at())

    def routes(self, model: CatalogModel) -> list[dict[str, Any]]:
        out = []
        for i, route in enumerate(model.routes):
            check = self.check(route)
            reason = check.reason
            if check.configured and not check.admitted:
                reason = "paused after repeated failures (circuit open)"
            out.append(
                {
                    "provider": route.provider,
                    "target": route.target,
                    "role": "primary" if i == 0 else "fallback",
                    "available": check.ready,
                    "reason": reason,
                    "circuit": check.circuit.value,
                }
            )
        return out

    def require_configured(self, model: CatalogModel) -> None:
        """Refuse a job no route could ever run (missing credentials, provider not enabled).

        A route paused by its circuit breaker still counts: the job waits for it.
        """
        reasons = []
        for route in model.routes:
            check = self.check(route)
            if check.configured:
                return
            reasons.append(f"{route.name}: {check.reason}")
        raise ModelUnavailable(
            f"The model '{model.id}' cannot run on this gateway now: {'; '.join(reasons)}.",
            param="model",
            code="model_unavailable",
            retry_after=60,
        )


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


def credential_report(
    catalog: Iterable[CatalogModel], availability: Availability
) -> CredentialReport:
    """Which routes of ``catalog`` are not configured (circuits aside: a paused route is
    still configured), by the one rule of ``Availability.check``."""
    models = list(catalog)
    report = CredentialReport(models=len(models))
    for model in models:
        usable = False
        for route in model.routes:
            check = availability.check(route)
            ok, reason = check.configured, check.reason
            usable = usable or ok
            if not ok:
                report.routes_unavailable.append(
                    {"model": model.id, "route": route.name, "reason": reason or "unavailable"}
                )
        if not usable:
            report.models_unavailable.append(model.id)
    return report
