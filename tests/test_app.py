"""The app as a whole (gateway/app.py): restarts on the same database, and the scheduler's order."""

from __future__ import annotations

from pathlib import Path

from tests.api.support import running, submit_image
from tests.conftest import AUTH_A, make_settings, wait_for


async def test_restart_finds_its_queued_jobs_again(tmp_path: Path) -> None:
    settings = make_settings(tmp_path)
    async with running(settings, start_scheduler=False) as (client, _gw):
        ids = [(await submit_image(client, seed=i))["id"] for i in range(3)]
        for job_id in ids:
            body = (await client.get(f"/v1/jobs/{job_id}", headers=AUTH_A)).json()
            assert body["status"] == "QUEUED"

    async with running(settings) as (client, _gw):
        for i, job_id in enumerate(ids):
            body = await wait_for(client, job_id)
            assert body["status"] == "COMPLETED", body
            assert body["result"]["seed"] == i


async def test_cancelled_job_is_not_run_after_a_restart(tmp_path: Path) -> None:
    settings = make_settings(tmp_path)
    async with running(settings, start_scheduler=False) as (client, _gw):
        cancelled = (await submit_image(client))["id"]
        resp = await client.post(f"/v1/jobs/{cancelled}/cancel", headers=AUTH_A)
        assert resp.status_code == 200, resp.text
        later = (await submit_image(client))["id"]

    async with running(settings) as (client, _gw):
        assert (await wait_for(client, later))["status"] == "COMPLETED"
        body = (await client.get(f"/v1/jobs/{cancelled}", headers=AUTH_A)).json()
    assert body["status"] == "CANCELLED"
    assert body["started_at"] is None
    assert "result" not in body


async def test_job_running_at_shutdown_completes_after_a_restart(tmp_path: Path) -> None:
    async with running(make_settings(tmp_path, sandbox_latency=30)) as (client, _gw):
        job_id = (await submit_image(client, seed=42))["id"]
        await wait_for(client, job_id, until=lambda j: j["status"] == "PROCESSING")

    async with running(make_settings(tmp_path)) as (client, _gw):
        body = await wait_for(client, job_id)
    assert body["status"] == "COMPLETED", body
    assert body["result"]["seed"] == 42


async def test_scheduler_runs_higher_priority_jobs_first(tmp_path: Path) -> None:
    async with running(make_settings(tmp_path), start_scheduler=False) as (client, _gw):
        submitted = {}
        for name, priority in [("low-1", 0), ("low-2", 0), ("high", 50), ("mid", 10)]:
            job = await submit_image(client, model="sandbox-image-fast", priority=priority)
            assert job["priority"] == priority
            submitted[name] = job["id"]

    settings = make_settings(tmp_path, provider_concurrency={"sandbox": 1})
    async with running(settings) as (client, gw):
        for job_id in submitted.values():
            assert (await wait_for(client, job_id))["status"] == "COMPLETED"
        started = {}
        for name, job_id in submitted.items():
            job = await gw.store.get_job(job_id)
            assert job is not None and job.started_at is not None
            started[name] = job.started_at
    assert sorted(started, key=started.__getitem__) == ["high", "mid", "low-1", "low-2"]


async def test_cancelling_a_running_job_frees_its_slot_for_the_next(tmp_path: Path) -> None:
    settings = make_settings(tmp_path, sandbox_latency=30, provider_concurrency={"sandbox": 1})
    async with running(settings) as (client, _gw):
        slow = (await submit_image(client))["id"]
        await wait_for(client, slow, until=lambda j: j["status"] == "PROCESSING")
        fast = (await submit_image(client, model="sandbox-image-fast"))["id"]
        resp = await client.post(f"/v1/jobs/{slow}/cancel", headers=AUTH_A)
        assert resp.status_code == 200, resp.text
        body = await wait_for(client, fast, timeout=5.0)
    assert body["status"] == "COMPLETED", body
