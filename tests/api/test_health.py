"""Health and readiness probes (gateway/app.py): no API key needed."""

from __future__ import annotations

import httpx


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
