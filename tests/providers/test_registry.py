"""Building the providers from settings: the provider webhooks (BACKSERV_PROVIDER_WEBHOOKS)."""

from __future__ import annotations

from pathlib import Path

import pydantic
import pytest

from gateway.errors import ConfigError
from providers.fal import FalProvider
from providers.registry import build_providers
from tests.conftest import make_settings


async def test_providers_are_polled_only_unless_webhooks_are_on(tmp_path: Path) -> None:
    providers = build_providers(make_settings(tmp_path))
    assert not any(p.webhooks_enabled for p in providers.values())
    assert providers["fal"].webhook_url("job-1") is None


async def test_with_webhooks_on_fal_and_replicate_are_given_the_public_ingress_urls(
    tmp_path: Path,
) -> None:
    settings = make_settings(
        tmp_path,
        provider_webhooks=True,
        public_url="https://gw.example/base/",
        fal_webhook_jwks_url="https://keys.example/jwks.json",
    )
    providers = build_providers(settings)
    enabled = {name for name, p in providers.items() if p.webhooks_enabled}
    assert enabled == {"fal", "replicate"}
    assert providers["fal"].webhook_url("job-1") == (
        "https://gw.example/base/v1/provider_webhooks/fal?job=job-1"
    )
    assert providers["replicate"].webhook_url("job-2", kind="video") == (
        "https://gw.example/base/v1/provider_webhooks/replicate?job=job-2&kind=video"
    )
    fal = providers["fal"]
    assert isinstance(fal, FalProvider)
    assert fal.webhooks.jwks_url == "https://keys.example/jwks.json"


def test_webhooks_without_a_public_url_are_refused_at_start(tmp_path: Path) -> None:
    with pytest.raises(pydantic.ValidationError, match="BACKSERV_PUBLIC_URL"):
        make_settings(tmp_path, provider_webhooks=True, public_url=None)


def test_a_malformed_replicate_webhook_secret_is_refused_at_start(tmp_path: Path) -> None:
    settings = make_settings(tmp_path, replicate_webhook_secret="not-a-secret!")
    with pytest.raises(ConfigError, match="REPLICATE_WEBHOOK_SECRET"):
        build_providers(settings)
