"""GET /v1/webhook_secret and POST /v1/webhook_secret/rotate: each key's signing secret."""

from __future__ import annotations

import base64

import httpx

from tests.conftest import AUTH_A, AUTH_B


async def test_the_secret_is_created_on_first_read_and_kept(idle_client: httpx.AsyncClient) -> None:
    first = await idle_client.get("/v1/webhook_secret", headers=AUTH_A)
    again = await idle_client.get("/v1/webhook_secret", headers=AUTH_A)

    assert first.status_code == 200
    body = first.json()
    assert set(body) == {"object", "secret", "created_at"}
    assert body["object"] == "webhook_secret"
    assert body["secret"].startswith("whsec_")
    assert len(base64.b64decode(body["secret"].removeprefix("whsec_"))) == 32
    assert isinstance(body["created_at"], int)
    assert again.json() == body
    assert first.headers["cache-control"] == "no-store"


async def test_rotation_returns_a_new_secret_that_later_reads_return(
    idle_client: httpx.AsyncClient,
) -> None:
    before = (await idle_client.get("/v1/webhook_secret", headers=AUTH_A)).json()

    rotated = await idle_client.post("/v1/webhook_secret/rotate", headers=AUTH_A)

    assert rotated.status_code == 200
    new = rotated.json()
    assert new["object"] == "webhook_secret" and new["secret"].startswith("whsec_")
    assert new["secret"] != before["secret"]
    assert (await idle_client.get("/v1/webhook_secret", headers=AUTH_A)).json() == new


async def test_each_key_sees_and_rotates_only_its_own_secret(
    idle_client: httpx.AsyncClient,
) -> None:
    a = (await idle_client.get("/v1/webhook_secret", headers=AUTH_A)).json()
    b = (await idle_client.get("/v1/webhook_secret", headers=AUTH_B)).json()
    assert a["secret"] != b["secret"]

    await idle_client.post("/v1/webhook_secret/rotate", headers=AUTH_B)

    assert (await idle_client.get("/v1/webhook_secret", headers=AUTH_A)).json() == a


async def test_the_secret_needs_a_key(idle_client: httpx.AsyncClient) -> None:
    for resp in (
        await idle_client.get("/v1/webhook_secret"),
        await idle_client.post("/v1/webhook_secret/rotate"),
        await idle_client.get("/v1/webhook_secret", headers={"Authorization": "Bearer nope"}),
    ):
        assert resp.status_code == 401
        assert resp.json()["error"]["type"] == "authentication_error"
