"""The provider webhook ingress (gateway/api/provider_webhooks.py): what it refuses."""

from __future__ import annotations

from pathlib import Path

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
