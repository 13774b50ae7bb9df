"""Which providers exist, and building the enabled ones from settings."""

from __future__ import annotations

from gateway.settings import Settings
from providers.base import Provider
from providers.sandbox import Fetch, SandboxProvider

#: every provider name a catalog route may use; routes of ones not built show as unavailable
KNOWN_PROVIDERS = ("sandbox", "fal", "replicate", "local")


def build_providers(settings: Settings, *, fetch: Fetch | None = None) -> dict[str, Provider]:
    return {
        "sandbox": SandboxProvider(
            latency=settings.sandbox_latency,
            failure_rate=settings.sandbox_failure_rate,
            fetch=fetch,
        ),
    }
