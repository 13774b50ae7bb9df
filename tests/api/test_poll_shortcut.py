"""The poll's shortcut (gateway/api/poll_shortcut.py): the same answers as the route, sooner."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from gateway.app import Gateway
from tests.api.support import requests_counted, running, submit_image
from tests.conftest import AUTH_A, AUTH_B, make_settings


@pytest.fixture
async def idle(tmp_path: Path) -> AsyncIterator[tuple[httpx.AsyncClient, Gateway]]:
    settings = make_settings(tmp_path, job_cache_seconds=60)
    async with running(settings, start_scheduler=False) as pair:
        yield pair


def metric(gw: Gateway, status: str) -> float:
    return requests_counted(gw, "GET", "/v1/jobs/{job_id}", status)


async def test_a_cached_poll_is_the_same_answer_byte_for_byte(
    idle: tuple[httpx.AsyncClient, Gateway],
) -> None:
    client, gw = idle
    job = await submit_image(client)
    first = await client.get(f"/v1/jobs/{job['id']}", headers=AUTH_A)  # the route: cached now
    reads = 0
    real_get = gw.store.get_job

    async def counting(job_id: str) -> object:
        nonlocal reads
        reads += 1
        return await real_get(job_id)

    gw.store.get_job = counting  # type: ignore[method-assign]
    second = await client.get(f"/v1/jobs/{job['id']}", headers=AUTH_A)

    assert reads == 0  # answered from the cache
    assert (second.status_code, second.content) == (200, first.content)
    assert second.headers["content-type"] == first.headers["content-type"] == "application/json"
    assert second.headers["content-length"] == first.headers["content-length"]
    assert second.headers["x-request-id"].startswith("req_")
    assert metric(gw, "200") == 2  # both counted under the route's template


@pytest.mark.parametrize(
    ("headers", "status", "code"),
    [
        (AUTH_B, 404, "job_not_found"),  # another key's job
        ({}, 401, "missing_api_key"),
        ({"Authorization": "Bearer sk-nobody"}, 401, "invalid_api_key"),
    ],
)
async def test_a_caller_who_may_not_read_the_job_gets_the_routes_error(
    idle: tuple[httpx.AsyncClient, Gateway], headers: dict[str, str], status: int, code: str
) -> None:
    client, _ = idle
    job = await submit_image(client)
    assert (await client.get(f"/v1/jobs/{job['id']}", headers=AUTH_A)).status_code == 200
    resp = await client.get(f"/v1/jobs/{job['id']}", headers=headers)
    assert resp.status_code == status, resp.text
    assert resp.json()["error"]["code"] == code


async def test_a_wait_or_a_bad_query_still_goes_to_the_route(
    idle: tuple[httpx.AsyncClient, Gateway],
) -> None:
    client, _ = idle
    job = await submit_image(client)
    await client.get(f"/v1/jobs/{job['id']}", headers=AUTH_A)
    resp = await client.get(f"/v1/jobs/{job['id']}?wait=abc", headers=AUTH_A)
    assert resp.status_code == 400
    assert resp.json()["error"]["param"] == "wait"
    resp = await client.get(f"/v1/jobs/{job['id']}?wait=1", headers=AUTH_A)
    assert resp.status_code == 200 and resp.json()["status"] == "QUEUED"


async def test_other_paths_under_v1_jobs_are_untouched(
    idle: tuple[httpx.AsyncClient, Gateway],
) -> None:
    client, _ = idle
    job = await submit_image(client)
    await client.get(f"/v1/jobs/{job['id']}", headers=AUTH_A)
    cancel = f"/v1/jobs/{job['id']}/cancel"
    assert (await client.post(cancel, headers=AUTH_A)).json()["status"] == "CANCELLED"
    assert (await client.get(f"/v1/jobs/{job['id']}", headers=AUTH_A)).json()["status"] == (
        "CANCELLED"
    )
    assert (await client.get("/v1/jobs", headers=AUTH_A)).json()["object"] == "list"
