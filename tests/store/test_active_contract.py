"""The JobStore contract for ``count_active`` (the per-key cap on active jobs).

Like ``test_contract.py``: functions of a ``store`` fixture, not collected on their own;
``test_sqlite.py`` and ``test_postgres.py`` star-import them.
"""

from __future__ import annotations

from gateway.jobs import Status
from gateway.store.base import JobStore
from tests.store.test_contract import insert

__test__ = False  # collected through the backend modules that provide ``store``


async def test_count_active_of_an_unknown_owner_is_zero(store: JobStore) -> None:
    assert await store.count_active("nobody") == 0


async def test_count_active_counts_queued_and_processing_jobs_of_one_owner(
    store: JobStore,
) -> None:
    for _ in range(3):
        await insert(store, owner="alice")
    await insert(store, owner="bob")
    await store.claim("sandbox", 2, "w1", 30.0)  # two PROCESSING (whoever's), the rest QUEUED

    assert await store.count_active("alice") == 3
    assert await store.count_active("bob") == 1


async def test_count_active_leaves_out_finished_jobs(store: JobStore) -> None:
    done, failed, cancelled = [await insert(store, owner="alice") for _ in range(3)]
    await insert(store, owner="alice")
    jobs = {j.id: j for j in await store.claim("sandbox", 2, "w1", 30.0)}
    await store.finish(done.id, jobs[done.id].lease_token, Status.COMPLETED, result={})
    await store.finish(failed.id, jobs[failed.id].lease_token, Status.FAILED, error={})
    await store.cancel(cancelled.id)

    assert await store.count_active("alice") == 1
