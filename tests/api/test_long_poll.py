"""``GET /v1/jobs/{id}?wait=N``: answer when the job is terminal or after N s, without polling."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from gateway.app import Gateway
from tests.api.support import assert_error, running, submit_image
from tests.conftest import AUTH_A, AUTH_B, make_settings


async def timed_get(
    client: httpx.AsyncClient, path: str, headers: dict[str, str] = AUTH_A
) -> tuple[httpx.Response, float]:
    started = time.monotonic()
    resp = await client.get(path, headers=headers)
    return resp, time.monotonic() - started


async def test_wait_answers_as_soon_as_the_job_completes(tmp_path: Path) -> None:
    async with running(make_settings(tmp_path, sandbox_latency=0.5)) as (client, _gw):
        job = await submit_image(client)
        resp, elapsed = await timed_get(client, f"/v1/jobs/{job['id']}?wait=2")
    assert resp.status_code == 200, resp.text
    body = resp.json()
    assert body["status"] == "COMPLETED", body
    assert body["result"]["images"], body
    assert 0.3 <= elapsed < 1.8, elapsed  # about the job's 0.5 s, well before the 2 s


async def test_wait_answers_after_n_seconds_while_the_job_runs(tmp_path: Path) -> None:
    async with running(make_settings(tmp_path, sandbox_latency=5.0)) as (client, _gw):
        job = await submit_image(client)
        resp, elapsed = await timed_get(client, f"/v1/jobs/{job['id']}?wait=1")
        assert resp.status_code == 200, resp.text
        assert resp.json()["status"] == "PROCESSING", resp.json()
        assert 0.9 <= elapsed < 2.5, elapsed
        cancel = await client.post(f"/v1/jobs/{job['id']}/cancel", headers=AUTH_A)
        assert cancel.status_code == 200, cancel.text


async def test_wait_on_a_finished_job_answers_at_once(tmp_path: Path) -> None:
    async with running(make_settings(tmp_path, sandbox_latency=0.0)) as (client, _gw):
        job = await submit_image(client)
        done, _ = await timed_get(client, f"/v1/jobs/{job['id']}?wait=5")
        assert done.json()["status"] == "COMPLETED"
        resp, elapsed = await timed_get(client, f"/v1/jobs/{job['id']}?wait=30")
    assert resp.json()["status"] == "COMPLETED"
    assert elapsed < 0.5, elapsed


async def test_wait_zero_answers_at_once(idle_client: httpx.AsyncClient) -> None:
    job = await submit_image(idle_client)
    for query in ("?wait=0", "?wait=", ""):
        resp, elapsed = await timed_get(idle_client, f"/v1/jobs/{job['id']}{query}")
        assert resp.status_code == 200, resp.text
        assert resp.json()["status"] == "QUEUED"
        assert elapsed < 0.5, (query, elapsed)


@pytest.mark.parametrize("value", ["61", "-1", "1.5", "soon", "3600"])
async def test_wait_out_of_range_is_a_400_naming_wait(
    idle_client: httpx.AsyncClient, value: str
) -> None:
    job = await submit_image(idle_client)
    resp, elapsed = await timed_get(idle_client, f"/v1/jobs/{job['id']}?wait={value}")
    assert_error(resp, 400, param="wait", error_type="invalid_request_error")
    assert "wait" in resp.json()["error"]["message"]
    assert elapsed < 0.5


async def test_wait_sixty_is_accepted(idle_client: httpx.AsyncClient) -> None:
    """The maximum itself is valid: cancelling the job ends the wait early."""
    job = await submit_image(idle_client)
    waiter = asyncio.create_task(idle_client.get(f"/v1/jobs/{job['id']}?wait=60", headers=AUTH_A))
    await asyncio.sleep(0.2)
    assert not waiter.done()
    await idle_client.post(f"/v1/jobs/{job['id']}/cancel", headers=AUTH_A)
    resp = await asyncio.wait_for(waiter, 2)
    assert resp.status_code == 200, resp.text
    assert resp.json()["status"] == "CANCELLED"


async def test_another_keys_job_is_404_even_with_wait(idle_client: httpx.AsyncClient) -> None:
    job = await submit_image(idle_client)
    resp, elapsed = await timed_get(idle_client, f"/v1/jobs/{job['id']}?wait=5", headers=AUTH_B)
    assert_error(resp, 404, code="job_not_found")
    assert elapsed < 0.5, elapsed  # refused at once, not after waiting
    missing, _ = await timed_get(idle_client, "/v1/jobs/job-000000000000000000000000?wait=5")
    assert_error(missing, 404)
    no_key = await idle_client.get(f"/v1/jobs/{job['id']}?wait=5")
    assert_error(no_key, 401)


async def test_concurrent_waiters_cost_no_database_polling(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """300 long-polls on 100 queued jobs: no reads while nothing changes, then one read per
    waiter per change (plus the cancels' own reads), not reads proportional to time."""
    jobs_count, per_job = 100, 3
    # one key submitting 100 jobs and waiting on each 3 times: its limits are not tested here
    settings = make_settings(tmp_path, max_waiters_per_key=0, rate_limit_per_second=0)
    async with running(settings, start_scheduler=False) as (client, gw):
        jobs = [await submit_image(client) for _ in range(jobs_count)]
        reads = spy_reads(gw, monkeypatch)

        waiters = [
            asyncio.create_task(client.get(f"/v1/jobs/{job['id']}?wait=20", headers=AUTH_A))
            for job in jobs
            for _ in range(per_job)
        ]
        deadline = time.monotonic() + 10
        while gw.events.watching < len(waiters):
            assert time.monotonic() < deadline, gw.events.watching
            assert not any(w.done() for w in waiters)
            await asyncio.sleep(0.02)
        # each waiter read its job when it arrived and once more when it started watching
        assert reads["n"] <= 2 * len(waiters), reads

        before = reads["n"]
        await asyncio.sleep(1.0)
        assert reads["n"] == before, "waiters read the database while no job changed"
        assert not any(w.done() for w in waiters)

        before = reads["n"]
        started = time.monotonic()
        for job in jobs:  # one change per job
            resp = await client.post(f"/v1/jobs/{job['id']}/cancel", headers=AUTH_A)
            assert resp.status_code == 200, resp.text
        answers = await asyncio.wait_for(asyncio.gather(*waiters), 10)
        assert time.monotonic() - started < 10
        assert all(a.json()["status"] == "CANCELLED" for a in answers)
        changes = jobs_count
        # per change: one read by each of its waiters and the cancel's own read(s)
        assert reads["n"] - before <= (per_job + 2) * changes, reads
        assert gw.events.watching == 0


def spy_reads(gw: Gateway, monkeypatch: pytest.MonkeyPatch) -> dict[str, int]:
    """Count the store's ``get_job`` calls from now on."""
    reads = {"n": 0}
    original = gw.store.get_job

    async def counting_get_job(job_id: str) -> Any:
        reads["n"] += 1
        return await original(job_id)

    monkeypatch.setattr(gw.store, "get_job", counting_get_job)
    return reads
