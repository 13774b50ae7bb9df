"""The JobStore contract, as functions of a ``store`` fixture (an open, empty store).

Not collected on its own (``__test__``): each backend's module star-imports these tests.
``tests/store/test_sqlite.py`` runs them on the shared ``store`` of ``tests/conftest.py`` (a
fresh SQLite store); ``tests/store/test_postgres.py`` overrides ``store`` with its ``pg_store``.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import time
from dataclasses import replace
from typing import Any

import pytest

from gateway.errors import DuplicateIdempotencyKey, ServiceUnavailable, StaleLease
from gateway.jobs import Attempt, Job, Outcome, Status, new_job_id
from gateway.store.base import ApiKeyRecord, JobStore

__test__ = False  # collected through the backend modules that provide ``store``

_clock = itertools.count(1)
BASE_TIME = 1_700_000_000.0


def make_job(**overrides: Any) -> Job:
    """A QUEUED job; every call is strictly newer than the one before."""
    created = BASE_TIME + next(_clock)
    values: dict[str, Any] = {
        "id": new_job_id(),
        "owner": "alice",
        "kind": "image",
        "model": "sandbox-image",
        "input": {"prompt": "a fox", "width": 64, "seed": 1},
        "lane": "sandbox",
        "created_at": created,
        "updated_at": created,
    }
    values.update(overrides)
    return Job(**values)


async def insert(store: JobStore, **overrides: Any) -> Job:
    job = make_job(**overrides)
    await store.insert_job(job)
    return job


async def claim_one(store: JobStore, lane: str = "sandbox", worker: str = "w1") -> Job:
    jobs = await store.claim(lane, 1, worker, 30.0)
    assert len(jobs) == 1
    return jobs[0]


async def stored(store: JobStore, job_id: str) -> Job:
    job = await store.get_job(job_id)
    assert job is not None, f"job {job_id} is not in the store"
    return job


ATTEMPT = Attempt(
    n=1,
    route="sandbox:image",
    route_index=0,
    provider="sandbox",
    request_id="req-1",
    ref={"k": "v"},
    started_at=BASE_TIME,
)


# -- insert / get ---------------------------------------------------------------------------


async def test_inserted_job_reads_back_with_every_field(store: JobStore) -> None:
    job = make_job(
        owner="bob",
        kind="video",
        model="sandbox-video",
        lane="fal",
        priority=7,
        input={"prompt": "ünïcødé 🦊", "nested": {"a": [1, 2.5, None, True]}, "seed": 9},
        meta={"face": "tasks", "callback": {"url": "https://example.com/hook"}},
    )
    await store.insert_job(job)

    got = await stored(store, job.id)

    assert got.id == job.id
    assert got.owner == "bob"
    assert got.kind == "video"
    assert got.model == "sandbox-video"
    assert got.lane == "fal"
    assert got.status is Status.QUEUED
    assert got.priority == 7
    assert got.progress == 0
    assert got.input == job.input
    assert got.meta == job.meta
    assert got.created_at == pytest.approx(job.created_at)
    assert got.updated_at == pytest.approx(job.updated_at)
    assert got.started_at is None
    assert got.completed_at is None
    assert got.result is None
    assert got.error is None
    assert got.attempts == []
    assert got.lease_token == 0
    assert got.lease_owner is None
    assert got.lease_expires is None


async def test_get_of_unknown_job_is_none(store: JobStore) -> None:
    assert await store.get_job("job-000000000000000000000000") is None


async def test_many_concurrent_inserts_all_persist_and_read_back_once_acknowledged(
    store: JobStore,
) -> None:
    async def submit(i: int) -> str:
        job = make_job(input={"prompt": f"p{i}"})
        await store.insert_job(job)
        got = await store.get_job(job.id)  # acknowledged means committed
        assert got is not None and got.input == {"prompt": f"p{i}"}
        return job.id

    ids = await asyncio.gather(*(submit(i) for i in range(500)))

    assert len(set(ids)) == 500
    jobs, more = await store.list_jobs(None, limit=1000)
    assert {j.id for j in jobs} == set(ids)
    assert more is False


async def test_insert_of_duplicate_id_fails_without_failing_its_neighbours(
    store: JobStore,
) -> None:
    first = await insert(store)
    before, after = make_job(), make_job()

    results = await asyncio.gather(
        store.insert_job(before),
        store.insert_job(make_job(id=first.id, owner="mallory")),
        store.insert_job(after),
        return_exceptions=True,
    )

    assert results[0] is None, f"a good insert failed: {results[0]!r}"
    assert isinstance(results[1], Exception)
    assert results[2] is None, f"a good insert failed: {results[2]!r}"
    assert (await stored(store, before.id)).id == before.id
    assert (await stored(store, after.id)).id == after.id
    assert (await stored(store, first.id)).owner == "alice"


# -- list -----------------------------------------------------------------------------------


async def test_list_is_newest_first(store: JobStore) -> None:
    ids = [(await insert(store)).id for _ in range(4)]
    jobs, more = await store.list_jobs("alice", limit=10)
    assert [j.id for j in jobs] == ids[::-1]
    assert more is False


async def test_list_pages_with_after_cursor_and_has_more(store: JobStore) -> None:
    ids = [(await insert(store)).id for _ in range(5)]
    newest_first = ids[::-1]

    page1, more1 = await store.list_jobs("alice", limit=2)
    page2, more2 = await store.list_jobs("alice", limit=2, after=page1[-1].id)
    page3, more3 = await store.list_jobs("alice", limit=2, after=page2[-1].id)

    assert [j.id for j in page1] == newest_first[0:2] and more1 is True
    assert [j.id for j in page2] == newest_first[2:4] and more2 is True
    assert [j.id for j in page3] == newest_first[4:5] and more3 is False


async def test_list_oldest_first_pages_forward_from_the_cursor(store: JobStore) -> None:
    ids = [(await insert(store)).id for _ in range(5)]
    page1, more1 = await store.list_jobs("alice", limit=3, oldest_first=True)
    page2, more2 = await store.list_jobs("alice", limit=3, after=page1[-1].id, oldest_first=True)
    assert [j.id for j in page1] == ids[:3] and more1 is True
    assert [j.id for j in page2] == ids[3:] and more2 is False
    gone, _ = await store.list_jobs("alice", limit=3, after="job-missing", oldest_first=True)
    assert gone == []


async def test_list_page_that_exactly_fills_limit_has_no_more(store: JobStore) -> None:
    for _ in range(3):
        await insert(store)
    jobs, more = await store.list_jobs("alice", limit=3)
    assert len(jobs) == 3
    assert more is False


async def test_list_filters_by_owner(store: JobStore) -> None:
    mine = await insert(store, owner="alice")
    await insert(store, owner="bob")
    jobs, _ = await store.list_jobs("alice", limit=10)
    assert [j.id for j in jobs] == [mine.id]


async def test_list_filters_by_kinds_and_skips_an_offset(store: JobStore) -> None:
    a = await insert(store, kind="image")
    await insert(store, kind="video")
    b = await insert(store, kind="upscale")
    c = await insert(store, kind="image", status=Status.CANCELLED)
    d = await insert(store, kind="image")

    def ids(jobs: list[Job]) -> list[str]:
        return [j.id for j in jobs]

    page, more = await store.list_jobs("alice", limit=10, kinds=["image", "upscale"])
    assert ids(page) == [d.id, c.id, b.id, a.id] and more is False
    page, more = await store.list_jobs("alice", limit=2, kinds=["image", "upscale"], offset=1)
    assert ids(page) == [c.id, b.id] and more is True
    page, _ = await store.list_jobs("alice", limit=10, kinds=["image"], offset=1, status=None)
    assert ids(page) == [c.id, a.id]
    page, _ = await store.list_jobs("alice", limit=10, kinds=["image"], status=Status.QUEUED)
    assert ids(page) == [d.id, a.id]
    assert (await store.list_jobs("alice", limit=10, kinds=[]))[0] == []
    assert (await store.list_jobs("alice", limit=10, offset=5))[0] == []


async def test_list_without_owner_lists_every_owner(store: JobStore) -> None:
    a = await insert(store, owner="alice")
    b = await insert(store, owner="bob")
    jobs, _ = await store.list_jobs(None, limit=10)
    assert [j.id for j in jobs] == [b.id, a.id]


async def test_list_filters_by_status(store: JobStore) -> None:
    queued = await insert(store)
    cancelled = await insert(store)
    await store.cancel(cancelled.id)

    q, _ = await store.list_jobs("alice", limit=10, status=Status.QUEUED)
    c, _ = await store.list_jobs("alice", limit=10, status=Status.CANCELLED)

    assert [j.id for j in q] == [queued.id]
    assert [j.id for j in c] == [cancelled.id]


async def test_list_filters_by_model(store: JobStore) -> None:
    image = await insert(store, model="sandbox-image")
    await insert(store, model="sandbox-video", kind="video")
    jobs, _ = await store.list_jobs("alice", limit=10, model="sandbox-image")
    assert [j.id for j in jobs] == [image.id]


async def test_list_cursor_combines_with_filters(store: JobStore) -> None:
    a1 = await insert(store, owner="alice")
    await insert(store, owner="bob")
    a2 = await insert(store, owner="alice")
    await insert(store, owner="bob")
    a3 = await insert(store, owner="alice")

    page, more = await store.list_jobs("alice", limit=1, after=a3.id)
    rest, more_rest = await store.list_jobs("alice", limit=5, after=page[-1].id)

    assert [j.id for j in page] == [a2.id] and more is True
    assert [j.id for j in rest] == [a1.id] and more_rest is False


# -- claim ----------------------------------------------------------------------------------


async def test_claim_takes_highest_priority_then_oldest(store: JobStore) -> None:
    low_old = await insert(store, priority=0)
    high_old = await insert(store, priority=5)
    low_new = await insert(store, priority=0)
    high_new = await insert(store, priority=5)

    first = await store.claim("sandbox", 3, "w1", 30.0)
    rest = await store.claim("sandbox", 3, "w1", 30.0)

    assert [j.id for j in first] == [high_old.id, high_new.id, low_old.id]
    assert [j.id for j in rest] == [low_new.id]


async def test_claim_takes_at_most_limit(store: JobStore) -> None:
    for _ in range(5):
        await insert(store)
    assert len(await store.claim("sandbox", 2, "w1", 30.0)) == 2
    assert len(await store.claim("sandbox", 0, "w1", 30.0)) == 0
    assert len(await store.claim("sandbox", 10, "w1", 30.0)) == 3


async def test_claim_takes_only_its_lane(store: JobStore) -> None:
    other = await insert(store, lane="fal")
    mine = await insert(store, lane="sandbox")
    jobs = await store.claim("sandbox", 10, "w1", 30.0)
    assert [j.id for j in jobs] == [mine.id]
    assert (await stored(store, other.id)).status is Status.QUEUED


async def test_claim_lanes_takes_each_lane_within_its_own_limits(store: JobStore) -> None:
    sandbox = [await insert(store, lane="sandbox") for _ in range(3)]
    fal = [await insert(store, lane="fal") for _ in range(3)]
    running = await store.claim("fal", 1, "w0", 30.0)  # one fal job already runs elsewhere

    claimed = await store.claim_lanes(
        {"sandbox": (2, 10), "fal": (5, 2), "replicate": (4, 4)}, "w1", 30.0
    )

    assert [j.id for j in claimed["sandbox"]] == [j.id for j in sandbox[:2]]
    assert [j.id for j in claimed["fal"]] == [fal[1].id]  # the lane's limit of 2 holds
    assert not claimed.get("replicate")
    assert [j.id for j in running] == [fal[0].id]
    for job in claimed["sandbox"] + claimed["fal"]:
        assert (await stored(store, job.id)).lease_owner == "w1"
    assert (await stored(store, sandbox[2].id)).status is Status.QUEUED


async def test_claim_takes_only_queued_jobs(store: JobStore) -> None:
    cancelled = await insert(store)
    await store.cancel(cancelled.id)
    taken = await insert(store)
    await claim_one(store)
    assert await store.claim("sandbox", 10, "w2", 30.0) == []
    assert (await stored(store, cancelled.id)).status is Status.CANCELLED
    assert (await stored(store, taken.id)).lease_owner == "w1"


async def test_claim_leases_the_job_and_bumps_the_fencing_token(store: JobStore) -> None:
    job = await insert(store)
    before = time.time()
    claimed = await claim_one(store, worker="worker-7")
    after = time.time()

    got = await stored(store, job.id)
    for j in (claimed, got):
        assert j.status is Status.PROCESSING
        assert j.lease_token == 1
        assert j.lease_owner == "worker-7"
        assert j.lease_expires is not None
        assert before + 30.0 - 1 <= j.lease_expires <= after + 30.0 + 1
        assert j.started_at is not None
        assert before - 1 <= j.started_at <= after + 1


async def test_reclaim_bumps_token_again_but_keeps_first_started_at(store: JobStore) -> None:
    job = await insert(store)
    first = await claim_one(store)
    await store.release(job.id, first.lease_token, [ATTEMPT])
    await asyncio.sleep(0.01)
    second = await claim_one(store, worker="w2")

    assert second.lease_token == first.lease_token + 1
    assert second.started_at == pytest.approx(first.started_at)
    assert second.lease_owner == "w2"
    assert second.attempts == [ATTEMPT]


async def test_concurrent_claims_never_hand_out_a_job_twice(store: JobStore) -> None:
    ids = {(await insert(store)).id for _ in range(30)}

    batches = await asyncio.gather(*(store.claim("sandbox", 4, f"w{i}", 30.0) for i in range(12)))

    claimed = [j.id for batch in batches for j in batch]
    assert len(claimed) == len(set(claimed)), "a job was claimed twice"
    assert set(claimed) == ids
    for batch, i in zip(batches, range(12), strict=True):
        for j in batch:
            assert (await stored(store, j.id)).lease_owner == f"w{i}"


# -- heartbeat, progress, attempts ------------------------------------------------------------


async def test_heartbeat_extends_the_leases_the_worker_holds(store: JobStore) -> None:
    job = await insert(store)
    claimed = (await store.claim("sandbox", 1, "w1", 5.0))[0]

    held = await store.heartbeat("w1", {job.id: claimed.lease_token}, 600.0)

    assert held == {job.id}
    got = await stored(store, job.id)
    assert got.lease_expires is not None
    assert got.lease_expires > time.time() + 500


async def test_heartbeat_with_stale_token_drops_the_job(store: JobStore) -> None:
    job = await insert(store)
    first = await claim_one(store, worker="w1")
    await store.release(job.id, first.lease_token, [])
    second = await claim_one(store, worker="w1")

    held = await store.heartbeat("w1", {job.id: first.lease_token}, 600.0)

    assert held == set()
    assert (await stored(store, job.id)).lease_expires == pytest.approx(second.lease_expires)


async def test_heartbeat_of_another_workers_job_drops_it(store: JobStore) -> None:
    job = await insert(store)
    claimed = await claim_one(store, worker="w1")

    held = await store.heartbeat("w2", {job.id: claimed.lease_token}, 600.0)

    assert held == set()
    assert (await stored(store, job.id)).lease_expires == pytest.approx(claimed.lease_expires)


async def test_heartbeat_of_cancelled_job_drops_it(store: JobStore) -> None:
    job = await insert(store)
    claimed = await claim_one(store)
    await store.cancel(job.id)
    assert await store.heartbeat("w1", {job.id: claimed.lease_token}, 600.0) == set()


async def test_heartbeat_reports_each_job_separately(store: JobStore) -> None:
    a = await insert(store)
    b = await insert(store)
    claimed = {j.id: j for j in await store.claim("sandbox", 2, "w1", 30.0)}
    tokens = {a.id: claimed[a.id].lease_token, b.id: claimed[b.id].lease_token + 5}
    assert await store.heartbeat("w1", tokens, 60.0) == {a.id}


async def test_save_progress_with_current_token_is_stored(store: JobStore) -> None:
    job = await insert(store)
    claimed = await claim_one(store)
    await store.save_progress(job.id, claimed.lease_token, 42, 3)
    got = await stored(store, job.id)
    assert (got.progress, got.queue_position) == (42, 3)


async def test_save_progress_with_stale_token_is_ignored(store: JobStore) -> None:
    job = await insert(store)
    first = await claim_one(store)
    await store.release(job.id, first.lease_token, [])
    second = await claim_one(store, worker="w2")
    await store.save_progress(job.id, second.lease_token, 10, None)

    await store.save_progress(job.id, first.lease_token, 90, 1)

    got = await stored(store, job.id)
    assert (got.progress, got.queue_position) == (10, None)


async def test_save_attempts_with_current_token_is_stored(store: JobStore) -> None:
    job = await insert(store)
    claimed = await claim_one(store)
    await store.save_attempts(job.id, claimed.lease_token, [ATTEMPT])
    assert (await stored(store, job.id)).attempts == [ATTEMPT]


async def test_save_attempts_with_stale_token_raises_stale_lease(store: JobStore) -> None:
    job = await insert(store)
    first = await claim_one(store)
    await store.release(job.id, first.lease_token, [])
    await claim_one(store, worker="w2")

    with pytest.raises(StaleLease):
        await store.save_attempts(job.id, first.lease_token, [ATTEMPT])

    assert (await stored(store, job.id)).attempts == []


# -- finish, release, requeue ------------------------------------------------------------------


async def test_finish_completed_stores_result_and_sets_progress_100(store: JobStore) -> None:
    job = await insert(store)
    claimed = await claim_one(store)
    result = {"files": [{"name": "0.png", "content_type": "image/png"}], "seed": 5}
    done = replace(ATTEMPT, ended_at=BASE_TIME + 1, outcome=Outcome.SUCCEEDED)

    await store.finish(
        job.id, claimed.lease_token, Status.COMPLETED, result=result, attempts=[done]
    )

    got = await stored(store, job.id)
    assert got.status is Status.COMPLETED
    assert got.progress == 100
    assert got.result == result
    assert got.error is None
    assert got.attempts == [done]
    assert got.completed_at is not None
    assert got.lease_owner is None
    assert got.lease_expires is None


async def test_finish_failed_stores_error(store: JobStore) -> None:
    job = await insert(store)
    claimed = await claim_one(store)
    await store.save_progress(job.id, claimed.lease_token, 30, None)
    error = {"code": "invalid_input", "message": "nope"}

    await store.finish(job.id, claimed.lease_token, Status.FAILED, error=error)

    got = await stored(store, job.id)
    assert got.status is Status.FAILED
    assert got.error == error
    assert got.result is None
    assert got.progress == 30
    assert got.completed_at is not None


@pytest.mark.parametrize("target", [Status.QUEUED, Status.PROCESSING, Status.CANCELLED])
async def test_finish_writes_only_completed_or_failed(store: JobStore, target: Status) -> None:
    job = await insert(store)
    claimed = await claim_one(store)

    with pytest.raises(ValueError, match="COMPLETED or FAILED"):
        await store.finish(job.id, claimed.lease_token, target)

    assert (await stored(store, job.id)).status is Status.PROCESSING


async def test_finish_without_attempts_keeps_the_stored_log(store: JobStore) -> None:
    job = await insert(store)
    claimed = await claim_one(store)
    await store.save_attempts(job.id, claimed.lease_token, [ATTEMPT])
    await store.finish(job.id, claimed.lease_token, Status.FAILED, error={"code": "x"})
    assert (await stored(store, job.id)).attempts == [ATTEMPT]


async def test_finish_twice_raises_stale_lease(store: JobStore) -> None:
    job = await insert(store)
    claimed = await claim_one(store)
    await store.finish(job.id, claimed.lease_token, Status.COMPLETED, result={"files": []})

    with pytest.raises(StaleLease):
        await store.finish(job.id, claimed.lease_token, Status.FAILED, error={"code": "x"})

    got = await stored(store, job.id)
    assert got.status is Status.COMPLETED
    assert got.error is None


async def test_finish_with_stale_token_raises_stale_lease(store: JobStore) -> None:
    job = await insert(store)
    first = await claim_one(store)
    await store.release(job.id, first.lease_token, [])
    await claim_one(store, worker="w2")

    with pytest.raises(StaleLease):
        await store.finish(job.id, first.lease_token, Status.COMPLETED, result={"files": []})

    assert (await stored(store, job.id)).status is Status.PROCESSING


async def test_finish_after_cancel_raises_and_never_resurrects_the_job(store: JobStore) -> None:
    job = await insert(store)
    claimed = await claim_one(store)
    await store.cancel(job.id)

    with pytest.raises(StaleLease):
        await store.finish(job.id, claimed.lease_token, Status.COMPLETED, result={"files": []})

    got = await stored(store, job.id)
    assert got.status is Status.CANCELLED
    assert got.result is None


async def test_finish_of_queued_job_raises_stale_lease(store: JobStore) -> None:
    job = await insert(store)
    with pytest.raises(StaleLease):
        await store.finish(job.id, 0, Status.COMPLETED, result={"files": []})
    assert (await stored(store, job.id)).status is Status.QUEUED


async def test_release_hands_the_job_back_keeping_attempts(store: JobStore) -> None:
    job = await insert(store)
    claimed = await claim_one(store)

    await store.release(job.id, claimed.lease_token, [ATTEMPT])

    got = await stored(store, job.id)
    assert got.status is Status.QUEUED
    assert got.attempts == [ATTEMPT]
    assert got.lease_owner is None
    assert got.lease_expires is None
    again = await claim_one(store, worker="w2")
    assert again.id == job.id
    assert again.attempts == [ATTEMPT]


async def test_release_with_stale_token_changes_nothing(store: JobStore) -> None:
    job = await insert(store)
    first = await claim_one(store)
    await store.release(job.id, first.lease_token, [])
    await claim_one(store, worker="w2")

    with contextlib.suppress(StaleLease):  # raising or ignoring are both fine; writing is not
        await store.release(job.id, first.lease_token, [ATTEMPT])

    got = await stored(store, job.id)
    assert got.status is Status.PROCESSING
    assert got.lease_owner == "w2"
    assert got.attempts == []


async def test_release_of_cancelled_job_keeps_it_cancelled(store: JobStore) -> None:
    job = await insert(store)
    claimed = await claim_one(store)
    await store.cancel(job.id)
    with contextlib.suppress(StaleLease):
        await store.release(job.id, claimed.lease_token, [ATTEMPT])
    assert (await stored(store, job.id)).status is Status.CANCELLED


async def test_requeue_expired_hands_back_only_expired_processing_jobs(store: JobStore) -> None:
    expired = await insert(store)
    fresh = await insert(store)
    queued_id = (await insert(store, lane="other")).id
    done = await insert(store, lane="done")
    short = (await store.claim("sandbox", 1, "w1", 10.0))[0]
    await store.save_attempts(short.id, short.lease_token, [ATTEMPT])
    await store.claim("sandbox", 1, "w2", 1000.0)
    finished = (await store.claim("done", 1, "w3", 10.0))[0]
    await store.finish(finished.id, finished.lease_token, Status.COMPLETED, result={"files": []})

    count = await store.requeue_expired(time.time() + 100)

    assert count == 1
    got = await stored(store, expired.id)
    assert got.status is Status.QUEUED
    assert got.lease_owner is None
    assert got.attempts == [ATTEMPT], "the provider reference must survive the hand-back"
    assert (await stored(store, fresh.id)).status is Status.PROCESSING
    assert (await stored(store, queued_id)).status is Status.QUEUED
    assert (await stored(store, done.id)).status is Status.COMPLETED
    assert await store.requeue_expired(time.time() + 100) == 0


async def test_requeued_job_is_claimed_with_a_new_token(store: JobStore) -> None:
    job = await insert(store)
    first = (await store.claim("sandbox", 1, "w1", 10.0))[0]
    await store.requeue_expired(time.time() + 100)

    second = await claim_one(store, worker="w2")

    assert second.id == job.id
    assert second.lease_token > first.lease_token
    with pytest.raises(StaleLease):
        await store.finish(job.id, first.lease_token, Status.COMPLETED, result={"files": []})


# -- cancel -----------------------------------------------------------------------------------


async def test_cancel_of_queued_job_cancels_it(store: JobStore) -> None:
    job = await insert(store)
    got = await store.cancel(job.id)
    assert got is not None
    assert got.id == job.id
    assert got.status is Status.CANCELLED
    assert got.completed_at is not None
    assert (await stored(store, job.id)).status is Status.CANCELLED


async def test_cancel_of_processing_job_cancels_it_and_drops_the_lease(store: JobStore) -> None:
    job = await insert(store)
    await claim_one(store)
    got = await store.cancel(job.id)
    assert got is not None
    assert got.status is Status.CANCELLED
    assert got.lease_owner is None
    assert (await stored(store, job.id)).status is Status.CANCELLED


@pytest.mark.parametrize("final", [Status.COMPLETED, Status.FAILED, Status.CANCELLED])
async def test_cancel_of_terminal_job_returns_none(store: JobStore, final: Status) -> None:
    job = await insert(store)
    if final is Status.CANCELLED:
        await store.cancel(job.id)
    else:
        claimed = await claim_one(store)
        await store.finish(job.id, claimed.lease_token, final, result={"files": []})

    assert await store.cancel(job.id) is None
    assert (await stored(store, job.id)).status is final


async def test_cancel_of_unknown_job_returns_none(store: JobStore) -> None:
    assert await store.cancel("job-000000000000000000000000") is None


# -- api keys and metadata --------------------------------------------------------------------


def make_key(n: int, created_at: float) -> ApiKeyRecord:
    return ApiKeyRecord(
        id=f"key_{n}",
        name=f"key number {n}",
        key_hash=f"hash-{n}",
        prefix=f"bs-{n}",
        created_at=created_at,
        scopes="jobs:write",
    )


async def test_created_key_is_found_by_hash(store: JobStore) -> None:
    record = make_key(1, BASE_TIME)
    await store.create_key(record)
    assert await store.find_key("hash-1") == record
    assert await store.find_key("hash-unknown") is None


async def test_keys_are_listed_oldest_first(store: JobStore) -> None:
    await store.create_key(make_key(2, BASE_TIME + 10))
    await store.create_key(make_key(1, BASE_TIME))
    assert [k.id for k in await store.list_keys()] == ["key_1", "key_2"]


async def test_revoke_marks_key_once(store: JobStore) -> None:
    await store.create_key(make_key(1, BASE_TIME))

    assert await store.revoke_key("key_1", BASE_TIME + 5) is True
    assert await store.revoke_key("key_1", BASE_TIME + 9) is False
    assert await store.revoke_key("key_unknown", BASE_TIME) is False

    found = await store.find_key("hash-1")
    assert found is not None
    assert found.revoked_at == pytest.approx(BASE_TIME + 5)


async def test_meta_set_if_absent_keeps_the_first_value(store: JobStore) -> None:
    assert await store.get_meta("secret_key") is None
    assert await store.set_meta_if_absent("secret_key", "first") == "first"
    assert await store.set_meta_if_absent("secret_key", "second") == "first"
    assert await store.get_meta("secret_key") == "first"


async def test_concurrent_meta_set_if_absent_agrees_on_one_value(store: JobStore) -> None:
    values = await asyncio.gather(*(store.set_meta_if_absent("k", f"v{i}") for i in range(20)))
    assert len(set(values)) == 1
    assert await store.get_meta("k") == values[0]


async def test_close_commits_the_writes_already_queued(store: JobStore) -> None:
    jobs = [make_job() for _ in range(50)]
    pending = [asyncio.ensure_future(store.insert_job(j)) for j in jobs]
    await asyncio.sleep(0)  # every insert is queued before the store closes
    await store.close()
    results = await asyncio.gather(*pending, return_exceptions=True)
    assert results == [None] * len(jobs)
    await store.open()
    for job in jobs:
        assert await store.get_job(job.id) is not None


async def test_a_write_after_close_is_refused_at_once(store: JobStore) -> None:
    await store.close()
    with pytest.raises(ServiceUnavailable):
        await asyncio.wait_for(store.insert_job(make_job()), 5)
    await store.open()  # leave it open for the fixture's teardown


# -- idempotency keys -------------------------------------------------------------------------


async def test_job_without_idempotency_key_or_purge_reads_back_with_them_unset(
    store: JobStore,
) -> None:
    job = await insert(store)
    got = await stored(store, job.id)
    assert (got.idempotency_key, got.request_hash, got.files_purged_at) == (None, None, None)


async def test_find_by_idempotency_key_finds_only_the_owners_job(store: JobStore) -> None:
    job = await insert(store, idempotency_key="key-1", request_hash="hash-1")
    await insert(store, owner="bob", idempotency_key="key-2", request_hash="hash-2")

    got = await store.find_by_idempotency_key("alice", "key-1")

    assert got is not None
    assert (got.id, got.idempotency_key, got.request_hash) == (job.id, "key-1", "hash-1")
    assert await store.find_by_idempotency_key("bob", "key-1") is None
    assert await store.find_by_idempotency_key("alice", "key-2") is None
    assert await store.find_by_idempotency_key("alice", "unknown") is None


async def test_idempotency_key_is_unique_per_owner_and_a_taken_one_fails_only_its_row(
    store: JobStore,
) -> None:
    first = await insert(store, idempotency_key="k", request_hash="h")
    before, twin, other_owner, after = (
        make_job(),
        make_job(idempotency_key="k", request_hash="h2"),
        make_job(owner="bob", idempotency_key="k", request_hash="h"),
        make_job(),
    )

    results = await asyncio.gather(
        *(store.insert_job(j) for j in (before, twin, other_owner, after)),
        return_exceptions=True,
    )

    assert isinstance(results[1], DuplicateIdempotencyKey), results[1]
    assert [results[0], results[2], results[3]] == [None, None, None], results
    assert await store.get_job(twin.id) is None
    for job in (first, before, other_owner, after):
        assert (await stored(store, job.id)).id == job.id
    found = await store.find_by_idempotency_key("alice", "k")
    assert found is not None and found.id == first.id


async def test_concurrent_inserts_with_one_key_store_exactly_one_job(store: JobStore) -> None:
    jobs = [make_job(idempotency_key="same", request_hash="h") for _ in range(20)]

    results = await asyncio.gather(*(store.insert_job(j) for j in jobs), return_exceptions=True)

    winners = [j for j, r in zip(jobs, results, strict=True) if r is None]
    assert len(winners) == 1, results
    assert all(isinstance(r, DuplicateIdempotencyKey) for r in results if r is not None)
    listed, _ = await store.list_jobs("alice", limit=100)
    assert [j.id for j in listed] == [winners[0].id]


async def test_jobs_without_a_key_never_collide_on_it(store: JobStore) -> None:
    for _ in range(3):
        await insert(store, idempotency_key=None)
    listed, _ = await store.list_jobs("alice", limit=10)
    assert len(listed) == 3


# -- retention --------------------------------------------------------------------------------

_lanes = itertools.count(1)


async def finished_job(store: JobStore, status: Status = Status.COMPLETED, **overrides: Any) -> Job:
    """A job that ran and ended in ``status`` now (CANCELLED: cancelled while QUEUED)."""
    job = await insert(store, lane=f"retention-{next(_lanes)}", **overrides)
    if status is Status.CANCELLED:
        await store.cancel(job.id)
    else:
        claimed = await claim_one(store, lane=job.lane)
        await store.finish(job.id, claimed.lease_token, status, result={"files": []})
    return await stored(store, job.id)


async def unfinished_jobs(store: JobStore) -> tuple[Job, Job]:
    """A QUEUED and a PROCESSING job, both created long ago."""
    queued = await insert(store, lane="idle", created_at=BASE_TIME - 10**6)
    running = await insert(store, lane="busy", created_at=BASE_TIME - 10**6)
    await claim_one(store, lane="busy")
    return queued, running


async def _tick() -> float:
    """A moment strictly between what finished before and what finishes after."""
    await asyncio.sleep(0.02)
    mark = time.time()
    await asyncio.sleep(0.02)
    return mark


async def test_jobs_with_files_before_lists_finished_jobs_completed_before_the_cutoff(
    store: JobStore,
) -> None:
    queued, running = await unfinished_jobs(store)
    completed = await finished_job(store)
    failed = await finished_job(store, Status.FAILED)
    cancelled = await finished_job(store, Status.CANCELLED)
    cutoff = await _tick()
    late = await finished_job(store)

    due = await store.jobs_with_files_before(cutoff, 10)

    assert due == [completed.id, failed.id, cancelled.id]  # oldest first
    assert await store.jobs_with_files_before(cutoff, 2) == [completed.id, failed.id]
    everything = await store.jobs_with_files_before(time.time() + 10**6, 100)
    assert everything == [completed.id, failed.id, cancelled.id, late.id]
    assert queued.id not in everything and running.id not in everything


async def test_mark_files_purged_takes_jobs_off_the_files_due_list(store: JobStore) -> None:
    first = await finished_job(store)
    second = await finished_job(store)
    later = time.time() + 10**6

    assert await store.mark_files_purged([first.id], BASE_TIME + 5) == 1
    assert await store.mark_files_purged([first.id, second.id], BASE_TIME + 9) == 1
    assert await store.mark_files_purged([], BASE_TIME) == 0

    assert (await stored(store, first.id)).files_purged_at == pytest.approx(BASE_TIME + 5)
    assert (await stored(store, second.id)).files_purged_at == pytest.approx(BASE_TIME + 9)
    assert await store.jobs_with_files_before(later, 10) == []
    got = await stored(store, first.id)
    assert got.status is Status.COMPLETED and got.result == {"files": []}


async def test_mark_files_purged_handles_more_ids_than_one_statement_binds(
    store: JobStore,
) -> None:
    job = await finished_job(store)
    ids = [new_job_id() for _ in range(1200)] + [job.id]
    assert await store.mark_files_purged(ids, BASE_TIME) == 1


async def test_delete_jobs_before_deletes_only_finished_jobs_completed_before_the_cutoff(
    store: JobStore,
) -> None:
    queued, running = await unfinished_jobs(store)
    purged = await finished_job(store, idempotency_key="k", request_hash="h")
    await store.mark_files_purged([purged.id], BASE_TIME)
    failed = await finished_job(store, Status.FAILED)
    cancelled = await finished_job(store, Status.CANCELLED)
    cutoff = await _tick()
    late = await finished_job(store)

    assert await store.delete_jobs_before(cutoff, 2) == [purged.id, failed.id]
    assert await store.delete_jobs_before(cutoff, 10) == [cancelled.id]
    assert await store.delete_jobs_before(cutoff, 10) == []

    for gone in (purged, failed, cancelled):
        assert await store.get_job(gone.id) is None
    assert (await stored(store, late.id)).status is Status.COMPLETED
    assert await store.delete_jobs_before(time.time() + 10**6, 10) == [late.id]
    assert (await stored(store, queued.id)).status is Status.QUEUED
    assert (await stored(store, running.id)).status is Status.PROCESSING
    assert await store.find_by_idempotency_key("alice", "k") is None
    await insert(store, idempotency_key="k", request_hash="h")  # the key is free again


async def test_watchers_hear_every_status_and_progress_change(store: JobStore) -> None:
    heard: list[str] = []
    store.watch_changes(heard.append)
    done, cancelled, handed_back = await insert(store), await insert(store), await insert(store)

    first = await claim_one(store)
    assert heard.count(first.id) == 1
    await store.save_progress(first.id, first.lease_token, 40, None)
    await store.finish(first.id, first.lease_token, Status.COMPLETED, result={"files": []})
    assert heard.count(first.id) == 3
    second = await claim_one(store)
    await store.cancel(second.id)
    third = await claim_one(store)
    await store.release(third.id, third.lease_token, [])
    assert {first.id, second.id, third.id} == {done.id, cancelled.id, handed_back.id}
    assert heard.count(second.id) == 2 and heard.count(third.id) == 2


async def test_watchers_hear_a_stale_write_not_at_all(store: JobStore) -> None:
    job = await insert(store)
    claimed = await claim_one(store)
    heard: list[str] = []
    store.watch_changes(heard.append)
    await store.save_progress(job.id, claimed.lease_token + 7, 50, None)
    assert heard == []


async def test_watchers_hear_jobs_recovered_from_expired_leases(store: JobStore) -> None:
    job = await insert(store)
    await store.claim("sandbox", 1, "gone", 0.01)
    heard: list[str] = []
    store.watch_changes(heard.append)
    await asyncio.sleep(0.05)
    assert await store.requeue_expired(time.time()) == 1
    assert heard == [job.id]


async def test_listing_filters_on_meta_values(store: JobStore) -> None:
    alice = await insert(store, meta={"user_id": "alice", "origin_zone": "eu"})
    await insert(store, meta={"user_id": "bob", "origin_zone": "eu"})
    await insert(store, meta={})

    jobs, _ = await store.list_jobs("alice", limit=10, meta={"user_id": "alice"})
    assert [j.id for j in jobs] == [alice.id]
    both, _ = await store.list_jobs(
        "alice", limit=10, meta={"user_id": "alice", "origin_zone": "eu"}
    )
    assert [j.id for j in both] == [alice.id]
    eu, _ = await store.list_jobs("alice", limit=10, meta={"origin_zone": "eu"})
    assert len(eu) == 2


async def test_listing_refuses_a_meta_key_that_is_not_a_plain_name(store: JobStore) -> None:
    with pytest.raises(ValueError):
        await store.list_jobs(None, limit=10, meta={"x') OR 1=1 --": "y"})


async def test_delete_job_removes_only_a_finished_job(store: JobStore) -> None:
    queued = await insert(store)
    assert await store.delete_job(queued.id) is False
    assert await store.get_job(queued.id) is not None
    claimed = await claim_one(store)
    await store.finish(claimed.id, claimed.lease_token, Status.COMPLETED, result={"files": []})
    assert await store.delete_job(claimed.id) is True
    assert await store.get_job(claimed.id) is None
    assert await store.delete_job(claimed.id) is False


async def test_set_priority_changes_only_a_queued_job(store: JobStore) -> None:
    low, high = await insert(store, priority=0), await insert(store, priority=0)
    assert await store.set_priority(high.id, 5) is True
    first = await claim_one(store)
    assert first.id == high.id and first.priority == 5
    assert await store.set_priority(high.id, 9) is False  # running now
    assert (await stored(store, low.id)).priority == 0


async def test_reroute_queued_changes_what_a_waiting_job_runs(store: JobStore) -> None:
    job = await insert(store, meta={"task": {"fal_app_id": "a/one"}})
    meta = {"task": {"fal_app_id": "b/two"}, "routes": [{"provider": "fal", "target": "b/two"}]}

    changed = await store.reroute_queued(
        job, model="other", lane="fal", input={"prompt": "new"}, meta=meta
    )

    assert changed is True
    after = await stored(store, job.id)
    assert (after.model, after.lane, after.input, after.meta) == (
        "other",
        "fal",
        {"prompt": "new"},
        meta,
    )
    [claimed] = await store.claim("fal", 1, "w1", 30.0)  # it waits in its new lane now
    assert claimed.id == job.id


async def test_reroute_queued_refuses_a_job_changed_since_it_was_read(store: JobStore) -> None:
    job = await insert(store)
    await asyncio.sleep(0.01)  # updated_at moves on
    assert await store.set_priority(job.id, 3) is True

    stale = await store.reroute_queued(job, model="x", lane="fal", input={}, meta={})

    assert stale is False
    fresh = await stored(store, job.id)
    assert fresh.model == "sandbox-image" and fresh.lane == "sandbox"
    claimed = await claim_one(store)
    assert claimed.id == job.id
    running = await store.reroute_queued(
        await stored(store, job.id), model="x", lane="fal", input={}, meta={}
    )
    assert running is False  # no longer QUEUED


async def test_set_meta_value_sets_a_nested_value_and_keeps_the_rest(store: JobStore) -> None:
    job = await insert(store, meta={"user_id": "alice", "task": {"workflow": "w1"}})
    assert await store.set_meta_value(job.id, ("task", "config"), {"team": "b", "n": 2}) is True
    assert await store.set_meta_value(job.id, ("extra", "deep"), [1, 2]) is True
    meta = (await stored(store, job.id)).meta
    assert meta == {
        "user_id": "alice",
        "task": {"workflow": "w1", "config": {"team": "b", "n": 2}},
        "extra": {"deep": [1, 2]},
    }
    assert await store.set_meta_value("job-" + "0" * 24, ("x",), 1) is False
    with pytest.raises(ValueError):
        await store.set_meta_value(job.id, ("a') OR 1=1",), 1)
