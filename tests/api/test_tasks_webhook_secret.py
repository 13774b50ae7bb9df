"""GET /api/v1/webhook_secret and POST /api/v1/webhook_secret/rotate: a Tasks API client
reads, with its JWT, the secret its tasks' webhooks are signed with, and verifies them."""

from __future__ import annotations

from pathlib import Path

from gateway.auth import hash_key, key_id_for
from tests.api.tasks_support import ALICE, BOB, assert_detail, auth, tasks_server
from tests.conftest import AUTH_A, KEY_A
from tests.webhooks.support import receiving, verify_standard_webhook

TASK = {
    "task_type": "GENERATION",
    "prompt": "a lighthouse",
    "width": 64,
    "height": 64,
    "origin_instance": "test-suite",
}


async def test_a_task_webhook_verifies_with_the_secret_its_token_reads(tmp_path: Path) -> None:
    async with (
        receiving() as receiver,
        tasks_server(tmp_path, webhook_allow="127.0.0.1") as tasks,
    ):
        task = await tasks.create({**TASK, "webhook_url": receiver.url})
        await tasks.finished(task["id"])
        await receiver.wait_until(1)
        resp = await tasks.client.get("/api/v1/webhook_secret", headers=ALICE)
        bobs = await tasks.client.get("/api/v1/webhook_secret", headers=BOB)

    assert resp.status_code == 200, resp.text
    assert resp.headers["cache-control"] == "no-store"
    secret = resp.json()
    assert set(secret) == {"object", "secret", "created_at"}
    assert secret["object"] == "webhook_secret" and secret["secret"].startswith("whsec_")
    (delivery,) = receiver.received
    assert delivery.payload["type"] == "job.completed"
    assert delivery.payload["data"]["id"] == task["service_task_id"]
    assert verify_standard_webhook(secret["secret"], delivery.headers, delivery.body)
    assert bobs.status_code == 200 and bobs.json()["secret"] != secret["secret"]
    assert not verify_standard_webhook(bobs.json()["secret"], delivery.headers, delivery.body)


async def test_rotation_replaces_only_the_token_subject_s_secret(tmp_path: Path) -> None:
    async with tasks_server(tmp_path, start_scheduler=False) as tasks:
        before = (await tasks.client.get("/api/v1/webhook_secret", headers=ALICE)).json()
        bobs = (await tasks.client.get("/api/v1/webhook_secret", headers=BOB)).json()

        rotated = await tasks.client.post("/api/v1/webhook_secret/rotate", headers=ALICE)

        assert rotated.status_code == 200, rotated.text
        assert rotated.json()["secret"] != before["secret"]
        after = await tasks.client.get("/api/v1/webhook_secret", headers=ALICE)
        assert after.json() == rotated.json()
        assert (await tasks.client.get("/api/v1/webhook_secret", headers=BOB)).json() == bobs


async def test_a_token_whose_sub_is_a_key_id_shares_that_key_s_secret(tmp_path: Path) -> None:
    key_owner = auth(key_id_for(hash_key(KEY_A)))
    async with tasks_server(tmp_path, start_scheduler=False) as tasks:
        by_key = await tasks.client.get("/v1/webhook_secret", headers=AUTH_A)
        by_token = await tasks.client.get("/api/v1/webhook_secret", headers=key_owner)

    assert by_token.status_code == 200, by_token.text
    assert by_token.json() == by_key.json()


async def test_a_tenant_token_may_not_read_or_rotate_the_owner_s_secret(tmp_path: Path) -> None:
    tenant = auth("alice", tenant="acme")
    async with tasks_server(tmp_path, start_scheduler=False) as tasks:
        before = (await tasks.client.get("/api/v1/webhook_secret", headers=ALICE)).json()
        read = await tasks.client.get("/api/v1/webhook_secret", headers=tenant)
        rotate = await tasks.client.post("/api/v1/webhook_secret/rotate", headers=tenant)
        after = (await tasks.client.get("/api/v1/webhook_secret", headers=ALICE)).json()

    assert "tenant 'acme'" in assert_detail(read, 403)
    assert "'tenant' claim" in assert_detail(rotate, 403)
    assert after == before


async def test_the_secret_needs_a_valid_token_and_a_configured_tasks_api(tmp_path: Path) -> None:
    async with tasks_server(tmp_path, start_scheduler=False) as tasks:
        for resp in (
            await tasks.client.get("/api/v1/webhook_secret"),
            await tasks.client.get("/api/v1/webhook_secret", headers=AUTH_A),  # an API key
            await tasks.client.post("/api/v1/webhook_secret/rotate", headers=AUTH_A),
        ):
            assert_detail(resp, 401)
            assert resp.headers["www-authenticate"] == "Bearer"
    async with tasks_server(tmp_path / "off", tasks_jwt_secret=None, start_scheduler=False) as off:
        resp = await off.client.get("/api/v1/webhook_secret", headers=ALICE)
        assert "BACKSERV_TASKS_JWT_SECRET" in assert_detail(resp, 503)
