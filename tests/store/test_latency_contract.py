"""The JobStore contract for ``recent_latencies`` (the web catalog's typical latency).

Like ``test_contract.py``: functions of a ``store`` fixture, not collected on their own;
``test_sqlite.py`` and ``test_postgres.py`` star-import them.
"""

from __future__ import annotations

import time

from gateway.jobs import Status
from gateway.store.base import JobStore
from tests.store.test_contract import insert

__test__ = False  # collected through the backend modules that provide ``store``


async def test_latencies_of_an_empty_store_are_empty(store: JobStore) -> None:
    assert await store.recent_latencies(10) == []


async def test_latencies_are_of_completed_jobs_only_newest_first(store: JobStore) -> None:
    now = time.time()
    first = await insert(store, model="a", created_at=now - 30)
    failed = await insert(store, model="b", created_at=now - 20)
    second = await insert(store, model="c", created_at=now - 10)
    await insert(store, model="d")  # still queued
    jobs = {j.id: j for j in await store.claim("sandbox", 3, "w1", 30.0)}
    for job, status in ((first, Status.COMPLETED), (failed, Status.FAILED)):
        token = jobs[job.id].lease_token
        await store.finish(
            job.id,
            token,
            status,
            result={} if status is Status.COMPLETED else None,
            error=None if status is Status.COMPLETED else {},
        )
    await store.finish(second.id, jobs[second.id].lease_token, Status.COMPLETED, result={})

    got = await store.recent_latencies(10)
    assert [model for model, _ in got] == ["c", "a"]
    assert 9 < got[0][1] < 60
    assert 29 < got[1][1] < 90
    assert [m for m, _ in await store.recent_latencies(1)] == ["c"]
