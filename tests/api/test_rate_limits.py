"""Per-key limits on job creation through the faces: every job-creating face honours a key's
own limits, and on PostgreSQL the limits hold across replicas (two apps, one database).

The PostgreSQL tests need a server (``BACKSERV_TEST_POSTGRES_URL``): they skip without one,
except in CI (``CI=true``), where they fail.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from gateway.app import Gateway
from gateway.auth import new_key_record
from gateway.ratelimit import KeyLimits
from gateway.settings import Settings
from tests.api.support import assert_error, running
from tests.conftest import make_settings
from tests.postgres import fresh_database

BODY = {"model": "sandbox-image", "input": {"prompt": "a fox", "width": 64, "height": 64}}
IMAGE = {"model": "sandbox-image", "prompt": "a fox", "width": 64, "height": 64}
SLOW = 0.001  # tokens per second: nothing refills during a test


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


async def stored_key(gw: Gateway, **limits: Any) -> dict[str, str]:
    key, record = new_key_record("limited", limits=KeyLimits(**limits))
    await gw.store.create_key(record)
    return bearer(key)


Submit = Callable[[httpx.AsyncClient, dict[str, str]], Awaitable[httpx.Response]]


async def _jobs(client: httpx.AsyncClient, headers: dict[str, str]) -> httpx.Response:
    return await client.post("/v1/jobs", json=BODY, headers=headers)


async def _jobs_images(client: httpx.AsyncClient, headers: dict[str, str]) -> httpx.Response:
    return await client.post("/v1/jobs/images", json=IMAGE, headers=headers)


async def _openai_images(client: httpx.AsyncClient, headers: dict[str, str]) -> httpx.Response:
    body = {"model": "sandbox-image", "prompt": "a fox", "size": "64x64"}
    return await client.post("/v1/images/generations", json=body, headers=headers)


async def _submit_task(client: httpx.AsyncClient, headers: dict[str, str]) -> httpx.Response:
    body = {"task_type": "image_creation", "task_params": {"prompt": "a fox"}, "user_id": "u"}
    return await client.post("/submit_task", json=body, headers=headers)


@pytest.mark.parametrize("submit", [_jobs, _jobs_images, _openai_images, _submit_task])
async def test_every_job_creating_face_honours_a_keys_own_rate_limit(
    tmp_path: Path, submit: Submit
) -> None:
    settings = make_settings(tmp_path, sync_wait_seconds=0.05)  # no default limit at all
    async with running(settings, start_scheduler=False) as (client, gw):
        limited = await stored_key(gw, rate_limit=SLOW, rate_burst=2)
        statuses = [(await submit(client, limited)).status_code for _ in range(2)]
        # 202, or the synchronous face's 504 (no scheduler runs: the job was created and waits)
        assert set(statuses) <= {202, 504}, statuses

        resp = await submit(client, limited)

        assert resp.status_code == 429, resp.text
        assert int(resp.headers["retry-after"]) > 900
        unlimited = await stored_key(gw)
        assert (await submit(client, unlimited)).status_code in (202, 504)


async def test_a_key_may_be_exempt_from_the_default_rate_limit(tmp_path: Path) -> None:
    settings = make_settings(tmp_path, rate_limit_per_second=SLOW, rate_limit_burst=1)
    async with running(settings, start_scheduler=False) as (client, gw):
        ordinary, exempt = await stored_key(gw), await stored_key(gw, rate_limit=0)
        assert (await _jobs(client, ordinary)).status_code == 202
        error = assert_error(await _jobs(client, ordinary), 429, code="rate_limit_exceeded")
        assert "per second" in error["message"]
        assert [(await _jobs(client, exempt)).status_code for _ in range(5)] == [202] * 5


# -- PostgreSQL: two replicas, one database -------------------------------------------------


@contextlib.asynccontextmanager
async def two_replicas(
    tmp_path: Path, **overrides: Any
) -> AsyncIterator[list[tuple[httpx.AsyncClient, Gateway]]]:
    """Two apps (in this process) on one fresh PostgreSQL database: two replicas."""
    async with fresh_database() as url:
        settings: list[Settings] = [
            make_settings(
                tmp_path,
                database_url=url,
                storage_dir=tmp_path / "shared-files",
                secret_key="s" * 64,
                **overrides,
            )
            for _ in range(2)
        ]
        async with running(settings[0], start_scheduler=False) as a:  # noqa: SIM117 - in turn:
            async with running(settings[1], start_scheduler=False) as b:  # migrations first
                yield [a, b]


async def test_replicas_share_one_bucket_per_key(tmp_path: Path) -> None:
    async with two_replicas(tmp_path) as replicas:
        (client_a, gw_a), (client_b, _gw_b) = replicas
        key = await stored_key(gw_a, rate_limit=SLOW, rate_burst=5)

        answers = await asyncio.gather(
            *(_jobs(client, key) for _ in range(8) for client in (client_a, client_b))
        )

        statuses = sorted(r.status_code for r in answers)
        assert statuses == [202] * 5 + [429] * 11  # 5 in all, not 5 per replica
        for client in (client_a, client_b):
            resp = await _jobs(client, key)
            assert_error(resp, 429, code="rate_limit_exceeded")
            assert int(resp.headers["retry-after"]) > 900
        listed = (await client_a.get("/v1/jobs", headers=key)).json()["jobs"]
        assert len(listed) == 5


async def test_replicas_share_the_default_rate_limit_too(tmp_path: Path) -> None:
    async with two_replicas(tmp_path, rate_limit_per_second=SLOW, rate_limit_burst=3) as replicas:
        (client_a, gw_a), (client_b, _gw_b) = replicas
        key = await stored_key(gw_a)
        statuses = [(await _jobs(c, key)).status_code for c in (client_a, client_b) * 3]
        assert sorted(statuses) == [202] * 3 + [429] * 3


async def test_the_active_jobs_cap_holds_across_replicas(tmp_path: Path) -> None:
    async with two_replicas(tmp_path, max_active_jobs_per_key=3) as replicas:
        (client_a, gw_a), (client_b, _gw_b) = replicas
        key = await stored_key(gw_a)
        for client in (client_a, client_b, client_a):
            assert (await _jobs(client, key)).status_code == 202
        for client in (client_a, client_b):
            error = assert_error(await _jobs(client, key), 429, code="too_many_active_jobs")
            assert "the limit is 3" in error["message"]
        job = (await client_a.get("/v1/jobs", headers=key)).json()["jobs"][0]
        assert (await client_b.post(f"/v1/jobs/{job['id']}/cancel", headers=key)).status_code == 200
        assert (await _jobs(client_a, key)).status_code == 202  # a slot freed on either replica


async def _refused_within(
    client: httpx.AsyncClient,
    send: Callable[[httpx.AsyncClient], Awaitable[httpx.Response]],
    status: int,
) -> httpx.Response:
    """The answer of ``send(client)`` once it is ``status``: a replica that did not make a
    key's change applies it when the changing transaction's NOTIFY arrives (docs/security.md),
    which a loaded machine may delay past the next request; never longer than a few seconds."""
    deadline = time.monotonic() + 5.0
    while (answer := await send(client)).status_code != status:
        assert time.monotonic() < deadline, f"the other replica still answers {answer.status_code}"
        await asyncio.sleep(0.01)
    return answer


async def test_limit_changes_and_revocations_reach_every_replica(tmp_path: Path) -> None:
    """The replica that changes a key applies the change at once; the others as soon as the
    change's NOTIFY arrives."""
    async with two_replicas(tmp_path) as replicas:
        (client_a, gw_a), (client_b, _gw_b) = replicas
        admin_key, admin_record = new_key_record("ops", scopes="admin")
        await gw_a.store.create_key(admin_record)
        admin = bearer(admin_key)
        created = (await client_a.post("/v1/keys", json={"name": "x"}, headers=admin)).json()
        key = bearer(created["key"])
        assert (await _jobs(client_b, key)).status_code == 202

        resp = await client_a.patch(
            f"/v1/keys/{created['id']}", json={"max_active_jobs": 1}, headers=admin
        )
        assert resp.status_code == 200, resp.text
        assert_error(await _jobs(client_a, key), 429, code="too_many_active_jobs")  # at once
        refused = await _refused_within(client_b, lambda c: _jobs(c, key), 429)
        assert_error(refused, 429, code="too_many_active_jobs")

        assert (
            await client_a.delete(f"/v1/keys/{created['id']}", headers=admin)
        ).status_code == 200
        assert_error(await client_a.get("/v1/jobs", headers=key), 401)  # here: at once
        revoked = await _refused_within(client_b, lambda c: c.get("/v1/jobs", headers=key), 401)
        assert_error(revoked, 401)
