"""The JobStore contract for ``count_by_status_and_lane`` (the metrics' queue depth).

Like ``test_contract.py``: functions of a ``store`` fixture, not collected on their own;
``test_sqlite.py`` and ``test_postgres.py`` star-import them.
"""

from __future__ import annotations

from gateway.jobs import Status
from gateway.store.base import JobStore
from tests.store.test_contract import insert

__test__ = False  # collected through the backend modules that provide ``store``


async def test_counts_of_an_empty_store_are_empty(store: JobStore) -> None:
    assert await store.count_by_status_and_lane() == {}


async def test_counts_queued_and_processing_jobs_per_lane(store: JobStore) -> None:
    for _ in range(3):
        await insert(store, lane="sandbox")
    for _ in range(2):
        await insert(store, lane="fal")
    await store.claim("sandbox", 2, "w1", 30.0)
    await store.claim("fal", 2, "w1", 30.0)

    assert await store.count_by_status_and_lane() == {
        (Status.QUEUED, "sandbox"): 1,
        (Status.PROCESSING, "sandbox"): 2,
        (Status.PROCESSING, "fal"): 2,
    }


async def test_counts_leave_out_finished_jobs(store: JobStore) -> None:
    done, failed, cancelled = [await insert(store) for _ in range(3)]
    jobs = {j.id: j for j in await store.claim("sandbox", 2, "w1", 30.0)}
    await store.finish(done.id, jobs[done.id].lease_token, Status.COMPLETED, result={})
    await store.finish(failed.id, jobs[failed.id].lease_token, Status.FAILED, error={})
    await store.cancel(cancelled.id)

    assert await store.count_by_status_and_lane() == {}


async def test_counts_follow_a_release_back_to_the_queue(store: JobStore) -> None:
    await insert(store)
    [job] = await store.claim("sandbox", 1, "w1", 30.0)
    assert await store.count_by_status_and_lane() == {(Status.PROCESSING, "sandbox"): 1}

    await store.release(job.id, job.lease_token, [])

    assert await store.count_by_status_and_lane() == {(Status.QUEUED, "sandbox"): 1}
