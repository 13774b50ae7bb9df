"""Which routes of a model can run now, and why not: one answer for the catalog and submits."""

from __future__ import annotations

from typing import Any

from gateway.catalog import CatalogModel
from gateway.errors import ModelUnavailable
from gateway.scheduler.breaker import Breakers, BreakerState
from providers.base import Provider


class Availability:
    def __init__(self, providers: dict[str, Provider], breakers: Breakers) -> None:
        self.providers = providers
        self.breakers = breakers

    def routes(self, model: CatalogModel) -> list[dict[str, Any]]:
        out = []
        for i, route in enumerate(model.routes):
            provider = self.providers.get(route.provider)
            reason: str | None
            if provider is None:
                ok, reason = False, f"the '{route.provider}' provider is not enabled"
            else:
                ok, reason = provider.availability(route)
            circuit = self.breakers.state(route.name)
            if ok and circuit is BreakerState.OPEN:
                ok, reason = False, "paused after repeated failures (circuit open)"
            out.append(
                {
                    "provider": route.provider,
                    "target": route.target,
                    "role": "primary" if i == 0 else "fallback",
                    "available": ok,
                    "reason": reason,
                    "circuit": circuit.value,
                }
            )
        return out

    def require_configured(self, model: CatalogModel) -> None:
        """Refuse a job no route could ever run (missing credentials, provider not enabled).

        A route paused by its circuit breaker still counts: the job waits for it.
        """
        reasons = []
        for route in model.routes:
            provider = self.providers.get(route.provider)
            if provider is None:
                reasons.append(f"{route.name}: the '{route.provider}' provider is not enabled")
                continue
            ok, reason = provider.availability(route)
            if ok:
                return
            reasons.append(f"{route.name}: {reason}")
        raise ModelUnavailable(
            f"The model '{model.id}' cannot run on this gateway now: {'; '.join(reasons)}.",
            param="model",
            code="model_unavailable",
            retry_after=60,
        )
