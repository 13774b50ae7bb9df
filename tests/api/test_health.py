"""Health and readiness probes (gateway/api/health.py): no API key needed."""

from __future__ import annotations

from pathlib import Path

import httpx

from gateway.app import Gateway
from gateway.catalog import parse_catalog
from providers.registry import KNOWN_PROVIDERS
from tests.api.support import running
from tests.conftest import make_settings


async def test_healthz_is_ok_without_an_api_key(client: httpx.AsyncClient) -> None:
    resp = await client.get("/healthz")
    assert resp.status_code == 200
    assert resp.json() == {"status": "ok"}


async def test_readyz_is_ready_with_checks_when_running(client: httpx.AsyncClient) -> None:
    resp = await client.get("/readyz")
    assert resp.status_code == 200, resp.text
    body = resp.json()
    assert body["status"] == "ready"
    assert body["checks"]["scheduler"] is True
    assert body["checks"]["database"] is True


async def test_readyz_fails_naming_the_database_when_it_is_closed(
    client: httpx.AsyncClient, gateway: Gateway
) -> None:
    await gateway.store.close()

    resp = await client.get("/readyz")

    assert resp.status_code == 503, resp.text
    body = resp.json()
    assert body["status"] == "not_ready"
    assert body["failed"] == ["database"]
    assert body["checks"]["database"] is False
    assert (await client.get("/healthz")).status_code == 200  # alive all the same


async def test_readyz_fails_naming_the_scheduler_when_it_is_not_running(
    idle_client: httpx.AsyncClient,
) -> None:
    resp = await idle_client.get("/readyz")
    assert resp.status_code == 503, resp.text
    assert resp.json()["failed"] == ["scheduler"]


async def test_readyz_warns_of_routes_without_credentials_but_stays_ready(
    client: httpx.AsyncClient,
) -> None:
    resp = await client.get("/readyz")  # the shipped catalog, with no FAL_KEY in the tests

    assert resp.status_code == 200, resp.text
    body = resp.json()
    assert body["checks"]["providers"] is True
    unavailable = body["providers"]["routes_unavailable"]
    fal = [r for r in unavailable if r["route"].startswith("fal:")]
    assert fal, unavailable
    assert all("FAL_KEY" in r["reason"] for r in fal)
    assert "sandbox-image" not in body["providers"]["models_unavailable"]


HOSTED_ONLY = {
    "models": [
        {"id": "hosted", "kind": "image", "routes": [{"provider": "fal", "target": "fal-ai/x"}]}
    ]
}


async def test_readyz_fails_when_no_model_of_the_catalog_can_run(tmp_path: Path) -> None:
    catalog = parse_catalog(HOSTED_ONLY, KNOWN_PROVIDERS, source="hosted-only")
    async with running(make_settings(tmp_path), catalog=catalog) as (client, _gw):
        resp = await client.get("/readyz")

    assert resp.status_code == 503, resp.text
    body = resp.json()
    assert body["failed"] == ["providers"]
    assert body["providers"]["models_unavailable"] == ["hosted"]


async def test_readyz_is_ready_once_the_missing_credential_is_set(tmp_path: Path) -> None:
    catalog = parse_catalog(HOSTED_ONLY, KNOWN_PROVIDERS, source="hosted-only")
    settings = make_settings(tmp_path, fal_key="k-123")
    async with running(settings, catalog=catalog) as (client, _gw):
        resp = await client.get("/readyz")

    assert resp.status_code == 200, resp.text
    assert resp.json()["providers"] == {"routes_unavailable": [], "models_unavailable": []}
