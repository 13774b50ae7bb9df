"""The dispatcher: deliveries owed by job changes, retries, restarts, the sweep, the view."""

from __future__ import annotations

import asyncio
import io
import logging
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import orjson
import pytest

from gateway.events import JobEvents
from gateway.jobs import Job, Status
from gateway.netguard import AllowList
from gateway.observability.logs import configure_logging
from gateway.store.base import JobStore, WebhookDelivery
from gateway.store.sqlite import SQLiteJobStore
from gateway.webhooks import Backoff, Sender, WebhookDispatcher, job_webhook, webhook_view
from gateway.webhooks.due import Due, due_events, new_delivery
from tests.store.test_contract import claim_one, insert, make_job
from tests.webhooks.support import eventually, receiving, verify_standard_webhook


def render(job: Job) -> dict[str, Any]:
    return {"id": job.id, "status": job.status.value, "progress": job.progress}


def dispatcher(
    store: JobStore,
    *,
    allow: str = "127.0.0.1",
    window: float = 60.0,
    poll: float = 0.05,
    events: JobEvents | None = None,
) -> WebhookDispatcher:
    return WebhookDispatcher(
        store,
        render,
        Sender(AllowList.parse(allow), 2.0),
        events=events,
        backoff=Backoff(base=0.05, cap=0.2, window=window),
        poll_seconds=poll,
    )


async def settled(store: JobStore, job_id: str, status: str = "delivered") -> WebhookDelivery:
    async def check() -> WebhookDelivery | None:
        found = [d for d in await store.deliveries_for_job(job_id) if d.status == status]
        return found[0] if found else None

    return await eventually(check)


async def finished(store: JobStore, hook: dict[str, Any], status: Status) -> Job:
    job = await insert(store, meta={"webhook": hook})
    claimed = await claim_one(store)
    if status is Status.CANCELLED:  # finish() writes a runner's ends; a cancel is its own write
        await store.cancel(job.id)
    else:
        await store.finish(job.id, claimed.lease_token, status)
    got = await store.get_job(job.id)
    assert got is not None
    return got


async def test_a_500_is_retried_and_the_retry_delivered(store: JobStore) -> None:
    async with receiving([500, 200]) as receiver:
        job = await finished(
            store, {"url": receiver.url, "events": ["completed"]}, Status.COMPLETED
        )
        d = dispatcher(store)
        d.start()
        try:
            assert await d.process(job.id) == 1
            done = await settled(store, job.id)
        finally:
            await d.stop()

    assert (done.attempts, done.last_status_code, done.event_key) == (2, 200, "completed")
    assert done.delivered_at is not None
    first, second = receiver.received
    assert first.headers["webhook-id"] == second.headers["webhook-id"] == done.id
    secret = (await store.get_or_create_webhook_secret(job.owner)).secret
    assert all(verify_standard_webhook(secret, r.headers, r.body) for r in receiver.received)
    assert second.payload == {
        "type": "job.completed",
        "timestamp": second.payload["timestamp"],
        "data": {"id": job.id, "status": "COMPLETED", "progress": 100},
    }


async def test_a_pending_delivery_is_sent_by_a_freshly_started_dispatcher(tmp_path: Path) -> None:
    path = tmp_path / "restart.db"
    async with receiving() as receiver:
        before = SQLiteJobStore(path)
        await before.open()
        job = make_job(meta={"webhook": {"url": receiver.url, "events": ["completed"]}})
        job.status = Status.FAILED
        await before.create_delivery(new_delivery(job, Due("completed", "job.failed"), {}, 1.0))
        await before.close()  # the gateway stops before it sent anything

        after = SQLiteJobStore(path)
        await after.open()
        d = dispatcher(after)
        d.start()
        try:
            done = await settled(after, job.id)
        finally:
            await d.stop()
            await after.close()

    assert done.attempts == 1
    assert [r.payload["type"] for r in receiver.received] == ["job.failed"]


async def test_a_delivery_fails_when_its_retry_window_has_passed(store: JobStore) -> None:
    async with receiving([500] * 100) as receiver:
        job = await finished(store, {"url": receiver.url}, Status.CANCELLED)
        d = dispatcher(store, window=0.3)
        d.start()
        try:
            await d.process(job.id)
            failed = await settled(store, job.id, "failed")
        finally:
            await d.stop()

    assert failed.attempts >= 2 and failed.last_status_code == 500
    assert failed.delivered_at is None
    assert len(receiver.received) == failed.attempts


async def test_a_failed_delivery_logs_no_token_of_its_url(
    store: JobStore, caplog: pytest.LogCaptureFixture
) -> None:
    """A receiver's URL may carry its credential (query string, user info): no log line
    shows it, neither the dispatcher's nor httpx's own "HTTP Request" line; nor does the
    delivery's error, which the job's owner reads."""
    out = io.StringIO()
    undo = configure_logging("info", "json", out)  # what ``backserv serve`` does
    caplog.set_level(logging.INFO)
    try:
        async with receiving([500] * 100) as receiver:
            url = receiver.url.replace("http://", "http://hook-user:PASSWORD@")
            job = await finished(store, {"url": f"{url}?token=SECRET"}, Status.COMPLETED)
            d = dispatcher(store, window=0.3)
            d.start()
            try:
                await d.process(job.id)
                failed = await settled(store, job.id, "failed")
            finally:
                await d.stop()
    finally:
        undo()

    assert failed.attempts >= 2 and failed.last_error
    assert [r.payload["type"] for r in receiver.received[:1]] == ["job.completed"]
    httpx_lines = [r for r in caplog.records if r.name == "httpx"]
    assert httpx_lines and all("/hook" in r.getMessage() for r in httpx_lines)
    assert any(r.name == "backserv.webhooks" for r in caplog.records)
    for text in (caplog.text, out.getvalue(), failed.last_error):
        assert "SECRET" not in text and "PASSWORD" not in text
    for record in caplog.records:
        assert "SECRET" not in record.getMessage() and "PASSWORD" not in record.getMessage()


async def test_delivery_log_lines_carry_the_job_id(store: JobStore) -> None:
    """The dispatcher's line and httpx's "HTTP Request" line of a delivery name its job."""
    out = io.StringIO()
    undo = configure_logging("info", "json", out)  # what ``backserv serve`` does
    try:
        async with receiving([500, 200]) as receiver:
            job = await finished(store, {"url": receiver.url}, Status.COMPLETED)
            d = dispatcher(store)
            d.start()
            try:
                await d.process(job.id)
                await settled(store, job.id)
            finally:
                await d.stop()
    finally:
        undo()

    lines = [orjson.loads(line) for line in out.getvalue().splitlines()]
    delivery = [ln for ln in lines if ln["logger"] in ("httpx", "backserv.webhooks")]
    assert {ln["logger"] for ln in delivery} == {"httpx", "backserv.webhooks"}
    assert all(ln["job_id"] == job.id for ln in delivery), delivery


async def test_a_target_refused_at_send_time_fails_without_a_request(store: JobStore) -> None:
    async with receiving() as receiver:
        job = await finished(store, {"url": receiver.url}, Status.COMPLETED)
        d = dispatcher(store, allow="")  # loopback is no longer allowed
        d.start()
        try:
            await d.process(job.id)
            failed = await settled(store, job.id, "failed")
        finally:
            await d.stop()

    assert failed.attempts == 1 and failed.last_error
    assert receiver.received == []


async def test_a_new_delivery_is_sent_without_waiting_for_the_poll(store: JobStore) -> None:
    async with receiving() as receiver:
        d = dispatcher(store, poll=60.0)
        d.start()
        try:
            await asyncio.sleep(0.05)  # the send loop is asleep on its long poll
            job = await finished(store, {"url": receiver.url}, Status.COMPLETED)
            await d.process(job.id)
            await receiver.wait_until(1, timeout=3.0)
        finally:
            await d.stop()


async def test_job_changes_become_deliveries_through_the_listener(store: JobStore) -> None:
    events = JobEvents()
    store.watch_changes(events.publish)
    async with receiving() as receiver:
        d = dispatcher(store, events=events)
        d.start()
        try:
            hook = {"url": receiver.url, "events": ["started", "progress", "completed"]}
            job = await insert(store, meta={"webhook": hook})
            claimed = await claim_one(store)
            await settled(store, job.id)  # started
            await store.save_progress(job.id, claimed.lease_token, 43, None)
            await eventually(lambda: _keys(store, job.id, {"started", "progress:40"}))
            await store.save_progress(job.id, claimed.lease_token, 47, None)  # same bucket
            await store.finish(job.id, claimed.lease_token, Status.COMPLETED)
            await eventually(lambda: _keys(store, job.id, {"started", "progress:40", "completed"}))
            await receiver.wait_until(3)
        finally:
            await d.stop()

    assert sorted(r.payload["type"] for r in receiver.received) == [
        "job.completed",
        "job.progress",
        "job.started",
    ]


async def _keys(store: JobStore, job_id: str, expected: set[str]) -> bool:
    keys = {d.event_key for d in await store.deliveries_for_job(job_id)}
    assert keys <= expected, keys
    return keys == expected


async def test_jobs_without_a_webhook_are_asked_about_once_in_a_batch_and_never_read(
    store: JobStore,
) -> None:
    events = JobEvents()
    reads: list[str] = []
    asked: list[set[str]] = []
    d = dispatcher(store, events=events)
    original_get, original_hooked = store.get_job, store.hooked_jobs

    async def counting_get(job_id: str) -> Job | None:
        reads.append(job_id)
        return await original_get(job_id)

    async def counting_hooked(job_ids: Sequence[str]) -> set[str]:
        asked.append(set(job_ids))
        return await original_hooked(job_ids)

    store.get_job = counting_get  # type: ignore[method-assign]
    store.hooked_jobs = counting_hooked  # type: ignore[method-assign]
    jobs = [await insert(store) for _ in range(5)]
    hooked = await insert(store, meta={"webhook": {"url": "https://hooks.example.com/in"}})
    d.start()
    try:
        for _ in range(3):
            for job in [*jobs, hooked]:
                events.publish(job.id)
            await asyncio.sleep(0.05)
    finally:
        await d.stop()

    assert asked[0] == {j.id for j in [*jobs, hooked]}  # one question for the whole batch
    assert all(a == {hooked.id} for a in asked[1:])  # the others are known not to have one
    assert set(reads) == {hooked.id}  # only the job with a webhook is read whole


async def test_the_sweep_stores_completions_that_were_missed(store: JobStore) -> None:
    hook = {"url": "https://hooks.example.com/in", "events": ["completed"]}
    failed = await finished(store, hook, Status.FAILED)
    d = dispatcher(store)  # not running: nobody heard the job finish

    assert await d.sweep(time.time() - 60) == 1
    assert await d.sweep(time.time() - 60) == 0
    [delivery] = await store.deliveries_for_job(failed.id)
    assert delivery.event_key == "completed" and delivery.status == "pending"
    assert '"type":"job.failed"' in delivery.payload


def test_due_events_follow_the_job_and_its_subscription() -> None:
    every = {"url": "https://h.example/", "events": ["started", "progress", "completed"]}
    job = make_job(meta={"webhook": every})
    assert due_events(job) == []
    job.status, job.started_at, job.progress = Status.PROCESSING, 1.0, 9
    assert [d.key for d in due_events(job)] == ["started"]
    job.progress = 57
    assert [d.key for d in due_events(job)] == ["started", "progress:50"]
    job.status = Status.CANCELLED
    assert due_events(job) == [Due("started", "job.started"), Due("completed", "job.cancelled")]
    job.meta = {"webhook": {"url": "https://h.example/"}}  # events default to completed
    assert due_events(job) == [Due("completed", "job.cancelled")]
    job.meta = {}
    assert due_events(job) == []


async def test_the_view_shows_the_target_and_each_delivery(store: JobStore) -> None:
    hook = {"url": "https://hooks.example.com/in", "events": ["completed"]}
    job = await finished(store, hook, Status.COMPLETED)
    delivery = new_delivery(job, Due("completed", "job.completed"), {}, 1_800_000_000.5)
    await store.create_delivery(delivery)
    await store.record_delivery_result(
        delivery.id,
        1,
        status="pending",
        status_code=503,
        error="HTTP 503",
        next_attempt_at=1.8e9 + 9,
        now=1.8e9,
    )

    view = await job_webhook(store, job)

    assert view == {
        "url": "https://hooks.example.com/in",
        "events": ["completed"],
        "deliveries": [
            {
                "id": delivery.id,
                "event": "completed",
                "status": "pending",
                "attempts": 1,
                "last_status_code": 503,
                "last_error": "HTTP 503",
                "delivered_at": None,
                "next_attempt_at": 1_800_000_009,
            }
        ],
    }
    assert webhook_view(make_job(), []) is None
    assert await job_webhook(store, make_job()) is None
