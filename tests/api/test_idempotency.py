"""Idempotency-Key on the job-creating POSTs (gateway/idempotency.py, gateway/api/jobs.py)."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import orjson
import pytest

from tests.api.support import assert_error, submit_image
from tests.conftest import AUTH_A, AUTH_B, wait_for

IMAGE = {"model": "sandbox-image", "prompt": "a red fox", "width": 64, "height": 64}
GENERIC = {"model": "sandbox-image", "input": {"prompt": "a red fox", "width": 64, "height": 64}}
ENDPOINTS = [
    pytest.param("/v1/jobs/images", IMAGE, id="images"),
    pytest.param("/v1/jobs", GENERIC, id="generic"),
]


def keyed(key: str | bytes, auth: dict[str, str] = AUTH_A) -> dict[str, Any]:
    return {**auth, "Idempotency-Key": key}


async def listed_ids(client: httpx.AsyncClient, auth: dict[str, str] = AUTH_A) -> list[str]:
    resp = await client.get("/v1/jobs?limit=100", headers=auth)
    assert resp.status_code == 200, resp.text
    return [j["id"] for j in resp.json()["jobs"]]


@pytest.mark.parametrize(("path", "body"), ENDPOINTS)
async def test_same_key_and_body_return_the_original_job_marked_replayed(
    idle_client: httpx.AsyncClient, path: str, body: dict[str, Any]
) -> None:
    first = await idle_client.post(path, json=body, headers=keyed("order-1"))
    again = await idle_client.post(path, json=body, headers=keyed("order-1"))

    assert first.status_code == again.status_code == 202, (first.text, again.text)
    assert "idempotent-replayed" not in first.headers
    assert again.headers["idempotent-replayed"] == "true"
    assert again.json()["id"] == first.json()["id"]
    assert again.json() == first.json()
    assert again.headers["location"] == first.headers["location"]
    assert await listed_ids(idle_client) == [first.json()["id"]]


@pytest.mark.parametrize(("path", "body"), ENDPOINTS)
async def test_same_key_with_a_different_body_is_422(
    idle_client: httpx.AsyncClient, path: str, body: dict[str, Any]
) -> None:
    first = await idle_client.post(path, json=body, headers=keyed("order-1"))
    assert first.status_code == 202, first.text
    changed = {**body, "priority": 5}

    resp = await idle_client.post(path, json=changed, headers=keyed("order-1"))

    error = assert_error(
        resp,
        422,
        param="Idempotency-Key",
        code="idempotency_key_reused",
        error_type="invalid_request_error",
    )
    assert "different request" in error["message"]
    assert await listed_ids(idle_client) == [first.json()["id"]]


async def test_same_key_on_the_other_endpoint_is_a_different_request(
    idle_client: httpx.AsyncClient,
) -> None:
    first = await idle_client.post("/v1/jobs/images", json=IMAGE, headers=keyed("k"))
    assert first.status_code == 202, first.text
    resp = await idle_client.post("/v1/jobs", json=GENERIC, headers=keyed("k"))
    assert_error(resp, 422, code="idempotency_key_reused")


async def test_key_order_and_whitespace_of_the_body_do_not_matter(
    idle_client: httpx.AsyncClient,
) -> None:
    compact = orjson.dumps(IMAGE)
    reordered = orjson.dumps(dict(reversed(IMAGE.items())), option=orjson.OPT_INDENT_2)
    headers = {**keyed("k"), "Content-Type": "application/json"}

    first = await idle_client.post("/v1/jobs/images", content=compact, headers=headers)
    again = await idle_client.post("/v1/jobs/images", content=reordered, headers=headers)

    assert again.status_code == 202, again.text
    assert again.headers["idempotent-replayed"] == "true"
    assert again.json()["id"] == first.json()["id"]


@pytest.mark.parametrize(("path", "body"), ENDPOINTS)
async def test_same_key_on_two_api_keys_creates_two_jobs(
    idle_client: httpx.AsyncClient, path: str, body: dict[str, Any]
) -> None:
    a = await idle_client.post(path, json=body, headers=keyed("shared", AUTH_A))
    b = await idle_client.post(path, json=body, headers=keyed("shared", AUTH_B))

    assert a.status_code == b.status_code == 202, (a.text, b.text)
    assert "idempotent-replayed" not in b.headers
    assert a.json()["id"] != b.json()["id"]
    assert await listed_ids(idle_client, AUTH_A) == [a.json()["id"]]
    assert await listed_ids(idle_client, AUTH_B) == [b.json()["id"]]


@pytest.mark.parametrize(("path", "body"), ENDPOINTS)
async def test_without_a_key_the_same_body_creates_two_jobs(
    idle_client: httpx.AsyncClient, path: str, body: dict[str, Any]
) -> None:
    first = await idle_client.post(path, json=body, headers=AUTH_A)
    second = await idle_client.post(path, json=body, headers=AUTH_A)

    assert first.status_code == second.status_code == 202
    assert "idempotent-replayed" not in second.headers
    assert first.json()["id"] != second.json()["id"]
    assert len(await listed_ids(idle_client)) == 2


@pytest.mark.parametrize(("path", "body"), ENDPOINTS)
async def test_twenty_concurrent_requests_with_one_key_create_one_job(
    idle_client: httpx.AsyncClient, path: str, body: dict[str, Any]
) -> None:
    responses = await asyncio.gather(
        *(idle_client.post(path, json=body, headers=keyed("burst")) for _ in range(20))
    )

    assert [r.status_code for r in responses] == [202] * 20, [r.text for r in responses]
    ids = {r.json()["id"] for r in responses}
    assert len(ids) == 1
    assert await listed_ids(idle_client) == list(ids)
    fresh = [r for r in responses if "idempotent-replayed" not in r.headers]
    assert len(fresh) == 1, "exactly one request created the job; the others replayed it"


@pytest.mark.parametrize(
    "key",
    [
        pytest.param("", id="empty"),
        pytest.param("k" * 256, id="too-long"),
        pytest.param("tab\there", id="control-character"),
        pytest.param("clé".encode(), id="not-ascii"),
    ],
)
@pytest.mark.parametrize(("path", "body"), ENDPOINTS)
async def test_malformed_key_is_400_naming_the_header(
    idle_client: httpx.AsyncClient, path: str, body: dict[str, Any], key: str | bytes
) -> None:
    resp = await idle_client.post(path, json=body, headers=keyed(key))
    assert_error(resp, 400, param="Idempotency-Key", code="invalid_idempotency_key")
    assert await listed_ids(idle_client) == []


async def test_longest_key_with_spaces_and_punctuation_is_accepted(
    idle_client: httpx.AsyncClient,
) -> None:
    key = ("order #42: retry ~ ok! " * 20)[:255]
    resp = await idle_client.post("/v1/jobs/images", json=IMAGE, headers=keyed(key))
    assert resp.status_code == 202, resp.text


async def test_a_rejected_request_does_not_use_up_its_key(idle_client: httpx.AsyncClient) -> None:
    bad = await idle_client.post(
        "/v1/jobs/images", json={**IMAGE, "width": 10**6}, headers=keyed("k")
    )
    assert_error(bad, 400)

    good = await idle_client.post("/v1/jobs/images", json=IMAGE, headers=keyed("k"))

    assert good.status_code == 202, good.text
    assert "idempotent-replayed" not in good.headers


async def test_replay_of_a_finished_job_returns_it_as_it_is_now(
    client: httpx.AsyncClient,
) -> None:
    job = await submit_image(client, headers=keyed("k"))
    done = await wait_for(client, job["id"])
    body = {"model": "sandbox-image", "prompt": "a red fox", "width": 64, "height": 64}

    again = await client.post("/v1/jobs/images", json=body, headers=keyed("k"))

    assert again.status_code == 202, again.text
    assert again.headers["idempotent-replayed"] == "true"
    assert again.json()["id"] == job["id"]
    assert again.json()["status"] == done["status"] == "COMPLETED"
