"""SQLiteJobStore: the JobStore contract, plus what only the embedded store promises.

The contract runs on the shared ``store`` fixture of ``tests/conftest.py``: a fresh SQLite store.
"""

from __future__ import annotations

import asyncio
import sqlite3
import threading
import time
from pathlib import Path

import pytest

from gateway.jobs import Status
from gateway.store.sqlite import SQLiteJobStore, queued_lanes_sql
from gateway.store.sqlite_schema import MIGRATIONS
from tests.store.test_active_contract import *  # noqa: F403 - active jobs, on SQLite
from tests.store.test_contract import *  # noqa: F403 - the contract suite, run against SQLite
from tests.store.test_contract import insert, stored
from tests.store.test_counts_contract import *  # noqa: F403 - job counts, on SQLite
from tests.store.test_keys_contract import *  # noqa: F403 - api keys, on SQLite
from tests.store.test_latency_contract import *  # noqa: F403 - latencies, on SQLite
from tests.store.test_spend_contract import *  # noqa: F403 - spend, on SQLite
from tests.store.test_webhook_contract import *  # noqa: F403 - webhooks, on SQLite


def _pragma(path: Path, name: str) -> object:
    conn = sqlite3.connect(path)
    try:
        return conn.execute(f"PRAGMA {name}").fetchone()[0]
    finally:
        conn.close()


async def test_jobs_keys_and_meta_survive_close_and_reopen(tmp_path: Path) -> None:
    path = tmp_path / "jobs.db"
    first = SQLiteJobStore(path)
    await first.open()
    job = await insert(first, meta={"face": "jobs"})
    claimed = (await first.claim("sandbox", 1, "w1", 30.0))[0]
    await first.finish(job.id, claimed.lease_token, Status.COMPLETED, result={"files": []})
    await first.set_meta_if_absent("secret_key", "s3cret")
    await first.close()

    second = SQLiteJobStore(path)
    await second.open()
    try:
        got = await stored(second, job.id)
        assert got.status is Status.COMPLETED
        assert got.meta == {"face": "jobs"}
        assert got.result == {"files": []}
        assert await second.get_meta("secret_key") == "s3cret"
    finally:
        await second.close()


async def test_migrations_are_recorded_in_user_version(tmp_path: Path) -> None:
    path = tmp_path / "jobs.db"
    store = SQLiteJobStore(path)
    await store.open()
    await store.close()
    assert _pragma(path, "user_version") == len(MIGRATIONS)


async def test_reopening_does_not_reapply_migrations(tmp_path: Path) -> None:
    path = tmp_path / "jobs.db"
    for _ in range(3):  # a re-applied CREATE TABLE would fail here
        store = SQLiteJobStore(path)
        await store.open()
        await insert(store)
        await store.close()

    assert _pragma(path, "user_version") == len(MIGRATIONS)
    conn = sqlite3.connect(path)
    try:
        assert conn.execute("SELECT COUNT(*) FROM jobs").fetchone()[0] == 3
    finally:
        conn.close()


async def test_database_runs_in_wal_mode(tmp_path: Path) -> None:
    path = tmp_path / "jobs.db"
    store = SQLiteJobStore(path)
    await store.open()
    try:
        assert str(_pragma(path, "journal_mode")).lower() == "wal"
    finally:
        await store.close()


async def test_open_creates_missing_parent_directories(tmp_path: Path) -> None:
    store = SQLiteJobStore(tmp_path / "a" / "b" / "jobs.db")
    await store.open()
    try:
        await insert(store)
    finally:
        await store.close()
    assert (tmp_path / "a" / "b" / "jobs.db").exists()


async def test_a_point_read_never_waits_on_the_loop_when_sqlite_is_busy(
    store: SQLiteJobStore,
) -> None:
    """A job read by id runs on the event loop without waiting for a lock: when SQLite
    answers busy, the same read goes through the threaded reader and still finds the job."""
    job = await insert(store)

    class Busy:
        calls = 0

        def execute(self, *args: object) -> None:
            Busy.calls += 1
            raise sqlite3.OperationalError("database is locked")

        def close(self) -> None:
            pass

    store._point = Busy()  # type: ignore[assignment]

    got = await stored(store, job.id)

    assert got.id == job.id and Busy.calls == 1


async def test_point_reads_see_each_committed_write_at_once(store: SQLiteJobStore) -> None:
    job = await insert(store)
    assert (await stored(store, job.id)).status is Status.QUEUED
    [claimed] = await store.claim("sandbox", 1, "w1", 30.0)
    assert (await stored(store, job.id)).status is Status.PROCESSING
    await store.finish(job.id, claimed.lease_token, Status.COMPLETED, result={"files": []})
    assert (await stored(store, job.id)).status is Status.COMPLETED


async def test_a_failing_write_leaves_nothing_behind_and_its_batch_commits(
    store: SQLiteJobStore,
) -> None:
    """Writes share a transaction (group commit); one that fails half-way is rolled back
    alone: its first statement does not commit with the others of its batch."""
    job = await insert(store)

    def half_then_fail(conn: sqlite3.Connection) -> None:
        conn.execute("UPDATE jobs SET priority = 7 WHERE id = ?", (job.id,))
        raise RuntimeError("second statement failed")

    def other(conn: sqlite3.Connection) -> int:
        return conn.execute("UPDATE jobs SET progress = 40 WHERE id = ?", (job.id,)).rowcount

    failing = asyncio.ensure_future(store._write(half_then_fail))
    fine = asyncio.ensure_future(store._write(other))  # queued behind it: the same batch
    with pytest.raises(RuntimeError, match="second statement"):
        await failing
    assert await fine == 1

    after = await stored(store, job.id)
    assert after.priority == 0 and after.progress == 40


async def test_a_batch_in_flight_when_the_writer_stops_still_answers_its_callers(
    store: SQLiteJobStore,
) -> None:
    """Closing cancels the writer task; a batch already in the writer thread runs on to its
    commit, and its callers get its answers instead of waiting forever."""
    started = threading.Event()

    def slow(conn: sqlite3.Connection) -> int:
        started.set()
        time.sleep(0.3)
        return 42

    pending = asyncio.ensure_future(store._write(slow))
    assert await asyncio.to_thread(started.wait, 5)
    assert store._writer_task is not None
    store._writer_task.cancel()

    assert await asyncio.wait_for(pending, 5) == 42


async def test_a_claims_lane_probe_seeks_each_lane_however_long_the_queue(
    store: SQLiteJobStore, tmp_path: Path
) -> None:
    """A lane at its limit can hold a long queue while the others are claimed on every
    wake-up: which lanes have work must be an index seek per lane, not a walk of the queue
    (``SELECT DISTINCT lane`` took 14 ms at 80,000 queued jobs, every claim)."""
    queued = [await insert(store, lane="sandbox") for _ in range(3)]
    conn = sqlite3.connect(tmp_path / "jobs.db")
    try:
        plan = [
            row[3]
            for row in conn.execute("EXPLAIN QUERY PLAN " + queued_lanes_sql(3), ("a", "b", "c"))
        ]
    finally:
        conn.close()
    assert "SEARCH jobs USING INDEX jobs_claim (lane=?)" in plan, plan
    assert not [step for step in plan if step.startswith("SCAN jobs")], plan

    claimed = await store.claim_lanes({"fal": (4, 4), "sandbox": (2, 8)}, "w1", 30.0)
    assert [j.id for j in claimed["sandbox"]] == [j.id for j in queued[:2]]
    assert not claimed.get("fal")
