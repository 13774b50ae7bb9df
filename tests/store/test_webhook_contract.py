"""The JobStore contract for webhooks (the deliveries outbox and the owners' secrets).

Like ``test_contract.py``: functions of a ``store`` fixture, not collected on their own;
``test_sqlite.py`` and ``test_postgres.py`` star-import them.
"""

from __future__ import annotations

import asyncio
import itertools
import time
from typing import Any

from gateway.jobs import Status
from gateway.store.base import JobStore, WebhookDelivery
from tests.store.test_contract import claim_one, insert

__test__ = False  # collected through the backend modules that provide ``store``

_ids = itertools.count(1)
NOW = 1_800_000_000.0
HOOK = {"url": "https://hooks.example.com/in", "events": ["started", "completed"]}


def make_delivery(job_id: str = "job-1", event_key: str = "completed", **overrides: Any) -> Any:
    values: dict[str, Any] = {
        "id": f"msg_{next(_ids):024x}",
        "job_id": job_id,
        "owner": "alice",
        "event_key": event_key,
        "url": "https://hooks.example.com/in",
        "payload": '{"type":"job.completed","timestamp":1,"data":{"id":"x","p":"ünï"}}',
        "created_at": NOW,
        "next_attempt_at": NOW,
    }
    values.update(overrides)
    return WebhookDelivery(**values)


async def finished_job(store: JobStore, meta: dict[str, Any], status: Status) -> str:
    job = await insert(store, meta=meta)
    claimed = await claim_one(store)
    assert claimed.id == job.id
    await store.finish(job.id, claimed.lease_token, status)
    return job.id


async def test_a_delivery_is_stored_once_per_job_and_event(store: JobStore) -> None:
    first = make_delivery("job-1", "started")
    assert await store.create_delivery(first) is True
    assert await store.create_delivery(make_delivery("job-1", "started")) is False
    assert await store.create_delivery(make_delivery("job-1", "completed")) is True
    assert await store.create_delivery(make_delivery("job-2", "started")) is True

    got = await store.deliveries_for_job("job-1")

    assert [d.event_key for d in got] == ["started", "completed"]
    assert got[0] == first  # every field reads back as written
    assert await store.deliveries_for_job("job-none") == []


async def test_concurrent_creations_of_one_delivery_store_one(store: JobStore) -> None:
    made = await asyncio.gather(*(store.create_delivery(make_delivery()) for _ in range(8)))

    assert sorted(made) == [False] * 7 + [True]
    assert len(await store.deliveries_for_job("job-1")) == 1


async def test_claim_takes_due_pending_deliveries_and_leases_them(store: JobStore) -> None:
    due = make_delivery("job-1", next_attempt_at=NOW - 5)
    later = make_delivery("job-2", next_attempt_at=NOW + 60)
    done = make_delivery("job-3", status="delivered", next_attempt_at=NOW - 5)
    for d in (due, later, done):
        await store.create_delivery(d)

    claimed = await store.claim_due_deliveries(NOW, 10, 30.0)

    assert [d.id for d in claimed] == [due.id]
    assert claimed[0].attempts == 0
    assert await store.claim_due_deliveries(NOW + 29, 10, 30.0) == []  # leased
    again = await store.claim_due_deliveries(NOW + 31, 10, 30.0)  # the lease ran out
    assert [d.id for d in again] == [due.id]
    leased = (await store.deliveries_for_job("job-1"))[0]
    assert leased.next_attempt_at == NOW + 31 + 30.0


async def test_claim_honours_the_limit_and_takes_the_longest_due_first(store: JobStore) -> None:
    for i in range(5):
        await store.create_delivery(make_delivery(f"job-{i}", next_attempt_at=NOW - i))

    first = await store.claim_due_deliveries(NOW, 2, 30.0)
    rest = await store.claim_due_deliveries(NOW, 10, 30.0)

    assert {d.job_id for d in first} == {"job-4", "job-3"}
    assert {d.job_id for d in rest} == {"job-0", "job-1", "job-2"}
    assert await store.claim_due_deliveries(NOW, 0, 30.0) == []


async def test_concurrent_claims_never_hand_out_a_delivery_twice(store: JobStore) -> None:
    for i in range(40):
        await store.create_delivery(make_delivery(f"job-{i}"))

    batches = await asyncio.gather(*(store.claim_due_deliveries(NOW, 7, 30.0) for _ in range(8)))

    ids = [d.id for batch in batches for d in batch]
    assert len(ids) == len(set(ids)) == 40


async def test_results_are_recorded_and_fenced_by_the_attempt_count(store: JobStore) -> None:
    d = make_delivery()
    await store.create_delivery(d)

    retry = NOW + 10
    assert await store.record_delivery_result(
        d.id, 1, status="pending", status_code=500, error="HTTP 500", next_attempt_at=retry, now=NOW
    )
    assert not await store.record_delivery_result(  # a second sender of attempt 1: stale
        d.id, 1, status="delivered", status_code=200, error=None, next_attempt_at=NOW, now=NOW
    )
    pending = (await store.deliveries_for_job(d.job_id))[0]
    assert (pending.status, pending.attempts, pending.last_status_code) == ("pending", 1, 500)
    assert (pending.last_error, pending.next_attempt_at, pending.delivered_at) == (
        "HTTP 500",
        retry,
        None,
    )

    assert await store.record_delivery_result(
        d.id, 2, status="delivered", status_code=204, error=None, next_attempt_at=retry, now=retry
    )
    done = (await store.deliveries_for_job(d.job_id))[0]
    assert (done.status, done.attempts, done.last_status_code) == ("delivered", 2, 204)
    assert done.delivered_at == retry and done.last_error is None
    assert await store.claim_due_deliveries(retry + 10**6, 10, 30.0) == []
    assert not await store.record_delivery_result(  # a finished delivery stays finished
        d.id, 3, status="failed", status_code=None, error="x", next_attempt_at=NOW, now=NOW
    )


async def test_a_failed_delivery_is_never_claimed_again(store: JobStore) -> None:
    d = make_delivery()
    await store.create_delivery(d)
    await store.record_delivery_result(
        d.id, 1, status="failed", status_code=None, error="refused", next_attempt_at=NOW, now=NOW
    )

    assert await store.claim_due_deliveries(NOW + 10**6, 10, 30.0) == []
    got = (await store.deliveries_for_job(d.job_id))[0]
    assert (got.status, got.attempts, got.delivered_at) == ("failed", 1, None)


async def test_finished_jobs_lacking_a_completed_delivery_are_found(store: JobStore) -> None:
    since = time.time() - 60
    wanted = await finished_job(store, {"webhook": HOOK}, Status.COMPLETED)
    failed = await finished_job(store, {"webhook": {"url": HOOK["url"]}}, Status.FAILED)
    served = await finished_job(store, {"webhook": HOOK}, Status.COMPLETED)
    await store.create_delivery(make_delivery(served, "completed"))
    await finished_job(store, {}, Status.COMPLETED)  # no webhook
    await finished_job(store, {"webhook": {**HOOK, "events": ["started"]}}, Status.COMPLETED)
    await insert(store, meta={"webhook": HOOK})  # not finished

    assert await store.jobs_missing_completed_delivery(since, 10) == [wanted, failed]
    assert await store.jobs_missing_completed_delivery(since, 1) == [wanted]
    assert await store.jobs_missing_completed_delivery(time.time() + 60, 10) == []
    await store.create_delivery(make_delivery(wanted, "completed"))
    assert await store.jobs_missing_completed_delivery(since, 10) == [failed]


async def test_cancelled_jobs_with_a_webhook_are_found_too(store: JobStore) -> None:
    job = await insert(store, meta={"webhook": HOOK})
    await store.cancel(job.id)

    assert await store.jobs_missing_completed_delivery(time.time() - 60, 10) == [job.id]


async def test_purge_deletes_old_finished_deliveries_only(store: JobStore) -> None:
    old_done = make_delivery("a", status="delivered", created_at=NOW - 100)
    old_failed = make_delivery("b", status="failed", created_at=NOW - 100)
    old_pending = make_delivery("c", created_at=NOW - 100)
    new_done = make_delivery("d", status="delivered", created_at=NOW)
    for d in (old_done, old_failed, old_pending, new_done):
        await store.create_delivery(d)

    assert await store.purge_deliveries_before(NOW - 50, 1) == 1
    assert await store.purge_deliveries_before(NOW - 50, 10) == 1
    assert await store.purge_deliveries_before(NOW - 50, 10) == 0

    left = {j for j in "abcd" if await store.deliveries_for_job(j)}
    assert left == {"c", "d"}


async def test_a_secret_is_created_on_first_use_and_kept(store: JobStore) -> None:
    first = await store.get_or_create_webhook_secret("alice")
    again = await store.get_or_create_webhook_secret("alice")
    other = await store.get_or_create_webhook_secret("bob")

    assert first.secret.startswith("whsec_") and len(first.secret) > 40
    assert again == first
    assert other.owner == "bob" and other.secret != first.secret


async def test_concurrent_first_uses_agree_on_one_secret(store: JobStore) -> None:
    got = await asyncio.gather(*(store.get_or_create_webhook_secret("carol") for _ in range(8)))

    assert len({s.secret for s in got}) == 1


async def test_rotation_replaces_the_secret_for_every_later_read(store: JobStore) -> None:
    before = await store.get_or_create_webhook_secret("alice")
    bob = await store.get_or_create_webhook_secret("bob")

    rotated = await store.rotate_webhook_secret("alice")

    assert rotated.secret.startswith("whsec_") and rotated.secret != before.secret
    assert rotated.created_at >= before.created_at
    assert await store.get_or_create_webhook_secret("alice") == rotated
    assert await store.get_or_create_webhook_secret("bob") == bob
    fresh = await store.rotate_webhook_secret("dave")  # rotating before any read creates it
    assert await store.get_or_create_webhook_secret("dave") == fresh


async def test_hooked_jobs_names_those_with_a_webhook_url_in_one_answer(store: JobStore) -> None:
    hooked = await insert(store, meta={"webhook": HOOK})
    bare = await insert(store, meta={})
    odd = await insert(store, meta={"webhook": {"url": 42}})  # not a URL: no webhook
    many = [(await insert(store, meta={"webhook": HOOK})).id for _ in range(3)]

    ids = [hooked.id, bare.id, odd.id, "job-missing", *many]
    assert await store.hooked_jobs(ids) == {hooked.id, *many}
    assert await store.hooked_jobs([]) == set()
