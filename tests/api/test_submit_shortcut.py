"""The submit's shortcut (gateway/api/submit_shortcut.py): the route's answers, errors included,
without the router and the exception layers."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from gateway.app import Gateway
from gateway.errors import RateLimited
from tests.api.support import requests_counted, running
from tests.conftest import AUTH_A, make_settings

BODY = {"model": "sandbox-image-fast", "prompt": "a lighthouse", "width": 64, "height": 64}


@pytest.fixture
async def idle(tmp_path: Path) -> AsyncIterator[tuple[httpx.AsyncClient, Gateway]]:
    async with running(make_settings(tmp_path), start_scheduler=False) as pair:
        yield pair


def count(gw: Gateway, status: str) -> float:
    return requests_counted(gw, "POST", "/v1/jobs/images", status)


async def test_a_submit_is_stored_answered_and_counted_under_its_route(
    idle: tuple[httpx.AsyncClient, Gateway],
) -> None:
    client, gw = idle
    resp = await client.post("/v1/jobs/images", json=BODY, headers=AUTH_A)
    assert resp.status_code == 202, resp.text
    job = resp.json()
    assert resp.headers["location"] == f"/v1/jobs/{job['id']}"
    assert resp.headers["x-request-id"].startswith("req_")
    assert (await gw.store.get_job(job["id"])).input["prompt"] == "a lighthouse"
    assert count(gw, "202") == 1


@pytest.mark.parametrize(
    ("body", "headers", "status", "code", "param"),
    [
        ({**BODY, "width": "wide"}, AUTH_A, 400, "invalid_value", "width"),
        ({**BODY, "model": "no-such-model"}, AUTH_A, 404, "model_not_found", "model"),
        (BODY, {}, 401, "missing_api_key", None),
    ],
)
async def test_a_refused_submit_gets_the_routes_error_and_stores_nothing(
    idle: tuple[httpx.AsyncClient, Gateway],
    body: dict[str, object],
    headers: dict[str, str],
    status: int,
    code: str,
    param: str | None,
) -> None:
    client, gw = idle
    resp = await client.post("/v1/jobs/images", json=body, headers=headers)
    assert resp.status_code == status, resp.text
    assert resp.json()["error"]["code"] == code
    assert resp.json()["error"]["param"] == param
    assert resp.headers["x-request-id"].startswith("req_")
    assert count(gw, str(status)) == 1
    assert (await client.get("/v1/jobs", headers=AUTH_A)).json()["jobs"] == []


async def test_a_refusal_with_headers_keeps_them(
    idle: tuple[httpx.AsyncClient, Gateway], monkeypatch: pytest.MonkeyPatch
) -> None:
    client, gw = idle

    async def limited(request: object) -> object:
        raise RateLimited("slow down", retry_after=7.0)

    monkeypatch.setattr(gw.service, "submit", limited)
    resp = await client.post("/v1/jobs/images", json=BODY, headers=AUTH_A)
    assert resp.status_code == 429
    assert resp.headers["retry-after"] == "7"


async def test_an_unexpected_failure_is_a_500_with_its_request_id(
    idle: tuple[httpx.AsyncClient, Gateway], monkeypatch: pytest.MonkeyPatch
) -> None:
    client, gw = idle

    async def broken(request: object) -> object:
        raise RuntimeError("boom")

    monkeypatch.setattr(gw.service, "submit", broken)
    transport = httpx.ASGITransport(app=client._transport.app, raise_app_exceptions=False)  # type: ignore[attr-defined]
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as raw:
        resp = await raw.post("/v1/jobs/images", json=BODY, headers=AUTH_A)
    assert resp.status_code == 500
    assert resp.json()["error"]["type"] == "server_error"
    assert resp.headers["x-request-id"].startswith("req_")


async def test_other_methods_and_queries_still_go_to_the_router(
    idle: tuple[httpx.AsyncClient, Gateway],
) -> None:
    client, _ = idle
    resp = await client.put("/v1/jobs/images", json=BODY, headers=AUTH_A)
    assert resp.status_code == 405
    assert resp.headers["allow"] == "POST"
    resp = await client.post("/v1/jobs/images?x=1", json=BODY, headers=AUTH_A)
    assert resp.status_code == 202  # a query string is ignored by the route, as ever
