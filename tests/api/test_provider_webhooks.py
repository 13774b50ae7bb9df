"""The provider webhook ingress (gateway/api/provider_webhooks.py): what it refuses."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette

from gateway.api.provider_webhooks import ProviderWebhooksAPI
from providers.base import WebhookDelivery
from tests.api.support import running
from tests.conftest import make_settings


async def test_the_ingress_is_a_404_while_provider_webhooks_are_off(tmp_path: Path) -> None:
    async with running(make_settings(tmp_path)) as (client, _gw):
        resp = await client.post("/v1/provider_webhooks/fal", content=b"{}")
        unknown = await client.post("/v1/provider_webhooks/nobody", content=b"{}")

    assert resp.status_code == 404 and unknown.status_code == 404


async def test_an_unsigned_delivery_is_a_401_and_counted_as_rejected(tmp_path: Path) -> None:
    settings = make_settings(tmp_path, provider_webhooks=True, fal_key="k")
    async with running(settings) as (client, _gw):
        resp = await client.post(
            "/v1/provider_webhooks/fal?job=job-x",
            content=b'{"request_id": "r1", "status": "OK", "payload": {}}',
        )
        metrics = (await client.get("/metrics")).text

    assert resp.status_code == 401, resp.text
    assert resp.json()["error"]["code"] == "webhook_signature"
    assert 'backserv_provider_webhooks_total{outcome="rejected",provider="fal"} 1.0' in metrics
    assert 'backserv_provider_webhooks_received_total{provider="fal"} 1.0' in metrics


async def test_an_oversized_delivery_is_a_413_counted_as_received_and_an_error(
    tmp_path: Path,
) -> None:
    settings = make_settings(tmp_path, provider_webhooks=True, fal_key="k")
    async with running(settings) as (client, _gw):
        resp = await client.post("/v1/provider_webhooks/fal", content=b"x" * (1024 * 1024 + 1))
        metrics = (await client.get("/metrics")).text

    assert resp.status_code == 413, resp.text
    assert 'backserv_provider_webhooks_received_total{provider="fal"} 1.0' in metrics
    assert 'backserv_provider_webhooks_total{outcome="error",provider="fal"} 1.0' in metrics


class _Receiver:
    """A provider whose deliveries always verify (the signature checks have their own tests)."""

    webhooks_enabled = True

    def __init__(self) -> None:
        self.delivered: list[WebhookDelivery] = []

    async def parse_webhook(
        self, headers: Mapping[str, str], body: bytes, query: Mapping[str, str] | None = None
    ) -> WebhookDelivery:
        job = (query or {}).get("job")
        return WebhookDelivery("req-1", None, "d-1", job_id=job)

    def deliver(self, delivery: Any) -> None:
        self.delivered.append(delivery)


async def test_a_verified_delivery_is_logged_with_its_job_id(
    caplog: pytest.LogCaptureFixture,
) -> None:
    relayed: list[tuple[str, Any]] = []

    async def relay(provider: str, delivery: Any) -> None:
        relayed.append((provider, delivery))

    receiver = _Receiver()
    app = Starlette(routes=ProviderWebhooksAPI({"fal": receiver}, relay).routes())
    caplog.set_level(logging.INFO, logger="backserv.provider_webhooks")
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
        resp = await client.post("/v1/provider_webhooks/fal?job=job-abc", content=b"{}")

    assert resp.status_code == 200 and len(receiver.delivered) == 1
    assert relayed == [("fal", receiver.delivered[0])]  # for the replica following it
    [record] = [r for r in caplog.records if r.name == "backserv.provider_webhooks"]
    assert record.job_id == "job-abc"
    assert record.provider_request_id == "req-1"
