"""Which providers exist, and building them from settings.

Every provider is built; one without credentials reports its routes as unavailable (with the
reason) instead of being left out, so ``GET /v1/models`` can say why a route is off.
"""

from __future__ import annotations

from gateway.settings import Settings
from providers.base import Provider
from providers.fal import FalProvider
from providers.local_torch import LocalTorchProvider
from providers.replicate import ReplicateProvider
from providers.sandbox import Fetch, SandboxProvider

#: every provider name a catalog route may use
KNOWN_PROVIDERS = ("sandbox", "fal", "replicate", "local")


def build_providers(settings: Settings, *, fetch: Fetch | None = None) -> dict[str, Provider]:
    #: the base of the callback URLs fal and Replicate are given, when they may call back
    callbacks = settings.base_url if settings.provider_webhooks else None
    providers: dict[str, Provider] = {
        "sandbox": SandboxProvider(
            latency=settings.sandbox_latency,
            failure_rate=settings.sandbox_failure_rate,
            fetch=fetch,
            fetch_allow=settings.fetch_allow_list,
            max_input_bytes=settings.max_input_bytes,
            memory_budget=settings.sandbox_memory_bytes,
            keep_bytes=settings.sandbox_keep_bytes,
        ),
        "fal": FalProvider(
            key=settings.fal_key,
            queue_url=settings.fal_queue_url,
            submit_timeout=settings.provider_timeout_seconds,
            poll_timeout=settings.provider_timeout_seconds,
            poll_interval=settings.provider_poll_seconds,
            max_calls=settings.provider_max_calls,
            webhook_base_url=callbacks,
            jwks_url=settings.fal_webhook_jwks_url,
        ),
        "replicate": ReplicateProvider(
            token=settings.replicate_api_token,
            base_url=settings.replicate_base_url,
            timeout=settings.provider_timeout_seconds,
            poll_interval=settings.provider_poll_seconds,
            max_calls=settings.provider_max_calls,
            webhook_base_url=callbacks,
            webhook_secret=settings.replicate_webhook_secret,
        ),
        "local": LocalTorchProvider(
            models_dir=settings.local_models_dir,
            device=settings.local_device,
            dtype=settings.local_dtype,
            max_pipelines=settings.local_max_pipelines,
            preload=[p.strip() for p in settings.local_preload.split(",") if p.strip()],
            cpu_threads=settings.local_cpu_threads,
            fetch=fetch,
            fetch_allow=settings.fetch_allow_list,
            max_input_bytes=settings.max_input_bytes,
        ),
    }
    for provider in providers.values():
        provider.webhook_poll_interval = settings.provider_webhook_poll_seconds
    return providers
