"""Webhooks end to end: a sandbox job run by the app, its events POSTed to a receiver."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from gateway.auth import hash_key, key_id_for
from gateway.service import JobRequest
from gateway.webhooks import job_webhook
from tests.api.support import running
from tests.conftest import AUTH_A, KEY_A, make_settings, wait_for
from tests.webhooks.support import Receiver, eventually, receiving, verify_standard_webhook

OWNER_A = key_id_for(hash_key(KEY_A))


def settings_for(tmp_path: Path, **overrides: Any) -> Any:
    return make_settings(
        tmp_path,
        webhook_allow="127.0.0.1",  # the receiver listens on loopback
        webhook_retry_base_seconds=0.05,
        **overrides,
    )


async def completed_arrived(receiver: Receiver) -> bool:
    return bool(receiver.of_type("job.completed"))


async def test_a_job_s_started_progress_and_completed_events_arrive_signed(
    tmp_path: Path,
) -> None:
    settings = settings_for(tmp_path, sandbox_latency=1.0)
    async with receiving([500]) as receiver, running(settings) as (client, gw):
        job, _ = await gw.service.submit(
            JobRequest(
                owner=OWNER_A,
                model=gw.service.resolve("sandbox-image"),
                input={"prompt": "a lighthouse", "width": 64, "height": 64},
                webhook_url=receiver.url,
                webhook_events=["started", "progress", "completed"],
            )
        )
        body = await wait_for(client, job.id)
        await eventually(lambda: completed_arrived(receiver))
        secret = (await client.get("/v1/webhook_secret", headers=AUTH_A)).json()["secret"]
        view = await eventually(lambda: _all_delivered(gw.store, job.id))

    assert body["status"] == "COMPLETED"
    assert all(verify_standard_webhook(secret, r.headers, r.body) for r in receiver.received)
    types = [r.payload["type"] for r in receiver.received]
    assert types.count("job.started") >= 1 and types.count("job.progress") >= 1
    completed = receiver.of_type("job.completed")
    assert len(completed) == 1
    data = completed[0].payload["data"]
    assert data["id"] == job.id and data["status"] == "COMPLETED"
    assert data["result"]["url"].startswith("http://testserver/files/")
    started = receiver.of_type("job.started")[-1].payload["data"]
    assert started["id"] == job.id and started["started_at"] is not None
    keys = [d["event"] for d in view["deliveries"]]
    assert keys[0] == "started" and keys[-1] == "completed"
    assert all(k.startswith("progress:") for k in keys[1:-1]) and len(set(keys)) == len(keys)
    attempts = sorted(d["attempts"] for d in view["deliveries"])
    assert attempts == [1] * (len(attempts) - 1) + [2]  # the receiver's first answer: a 500
    assert all(d["last_status_code"] == 200 for d in view["deliveries"])


async def _all_delivered(store: Any, job_id: str) -> dict[str, Any] | None:
    job = await store.get_job(job_id)
    view = await job_webhook(store, job)
    done = (
        view is not None
        and view["deliveries"]
        and all(d["status"] == "delivered" for d in view["deliveries"])
    )
    return view if done else None


async def test_a_cancelled_job_sends_job_cancelled_only_by_default(tmp_path: Path) -> None:
    settings = settings_for(tmp_path, sandbox_latency=5.0)
    async with receiving() as receiver, running(settings) as (client, gw):
        job, _ = await gw.service.submit(
            JobRequest(
                owner=OWNER_A,
                model=gw.service.resolve("sandbox-image"),
                input={"prompt": "a lighthouse", "width": 64, "height": 64},
                webhook_url=receiver.url,
            )
        )
        cancelled = await client.post(f"/v1/jobs/{job.id}/cancel", headers=AUTH_A)
        assert cancelled.status_code == 200
        await receiver.wait_until(1)

    [got] = receiver.received
    assert got.payload["type"] == "job.cancelled"
    assert got.payload["data"]["status"] == "CANCELLED"


async def test_webhook_fields_on_the_jobs_api_reach_the_receiver_and_show_on_the_job(
    tmp_path: Path,
) -> None:
    settings = settings_for(tmp_path)
    async with receiving() as receiver, running(settings) as (client, _gw):
        resp = await client.post(
            "/v1/jobs/images",
            json={
                "model": "sandbox-image",
                "prompt": "a lighthouse",
                "width": 64,
                "height": 64,
                "webhook_url": receiver.url,
            },
            headers=AUTH_A,
        )
        assert resp.status_code == 202, resp.text
        job_id = resp.json()["id"]
        await wait_for(client, job_id)
        await eventually(lambda: completed_arrived(receiver))

        async def delivered() -> dict[str, Any] | None:
            body: dict[str, Any] = (await client.get(f"/v1/jobs/{job_id}", headers=AUTH_A)).json()
            hook = body.get("webhook") or {}
            ok = [d for d in hook.get("deliveries", []) if d["status"] == "delivered"]
            return body if ok else None

        body = await eventually(delivered)
        secret = (await client.get("/v1/webhook_secret", headers=AUTH_A)).json()["secret"]

    assert body["webhook"]["url"] == receiver.url and body["webhook"]["events"] == ["completed"]
    [received] = receiver.received  # only "completed" by default
    assert verify_standard_webhook(secret, received.headers, received.body)
    assert received.payload["data"]["id"] == job_id


async def test_a_private_webhook_target_is_refused_at_submit(tmp_path: Path) -> None:
    async with running(make_settings(tmp_path)) as (client, _gw):
        for url in ("http://127.0.0.1:9/hook", "http://169.254.169.254/latest", "http://10.0.0.7/"):
            resp = await client.post(
                "/v1/jobs",
                json={"model": "sandbox-image", "input": {"prompt": "x"}, "webhook_url": url},
                headers=AUTH_A,
            )
            assert resp.status_code == 400, resp.text
            assert resp.json()["error"]["param"] == "webhook_url"
        listed = (await client.get("/v1/jobs", headers=AUTH_A)).json()["jobs"]
    assert listed == []
