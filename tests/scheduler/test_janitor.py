"""Retention (gateway/scheduler/janitor.py): expired files first, then expired records;
nothing unfinished."""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from pydantic import ValidationError

from gateway.jobs import Job, Status
from gateway.scheduler.janitor import Janitor, PurgeCounts
from gateway.storage import LocalStorage, OutputSource
from gateway.store.sqlite import SQLiteJobStore
from tests.api.support import running
from tests.conftest import make_settings
from tests.store.test_contract import claim_one, insert, stored

FILE_TTL = 100.0
RECORD_TTL = 1000.0
_lanes = itertools.count(1)


@pytest.fixture
def storage(tmp_path: Path) -> LocalStorage:
    return LocalStorage(tmp_path / "files", OutputSource(max_bytes=1024))


def janitor(
    store: SQLiteJobStore,
    storage: LocalStorage,
    *,
    file_ttl: float = FILE_TTL,
    interval: float = 300.0,
    batch_size: int = 500,
    clock: Callable[[], float] = time.time,
) -> Janitor:
    return Janitor(
        store,
        storage,
        file_ttl=file_ttl,
        record_ttl=RECORD_TTL,
        interval=interval,
        batch_size=batch_size,
        clock=clock,
    )


def result_file(storage: LocalStorage, job_id: str) -> Path:
    path = storage.path(job_id, "0.png")
    assert path is not None
    return path


async def completed(store: SQLiteJobStore, storage: LocalStorage) -> Job:
    """A COMPLETED job (finished now) with one result file on disk."""
    job = await insert(store, lane=f"j{next(_lanes)}")
    claimed = await claim_one(store, lane=job.lane)
    path = result_file(storage, job.id)
    path.parent.mkdir(parents=True)
    path.write_bytes(b"png")
    files = [{"name": "0.png", "content_type": "image/png"}]
    await store.finish(job.id, claimed.lease_token, Status.COMPLETED, result={"files": files})
    return await stored(store, job.id)


async def unfinished(store: SQLiteJobStore) -> tuple[Job, Job]:
    """A QUEUED and a PROCESSING job, created long ago."""
    queued = await insert(store, lane="idle", created_at=1.0)
    running = await insert(store, lane="busy", created_at=1.0)
    await claim_one(store, lane="busy")
    return queued, running


async def test_files_go_after_the_file_ttl_and_records_after_the_record_ttl(
    store: SQLiteJobStore, storage: LocalStorage
) -> None:
    job = await completed(store, storage)
    queued, running = await unfinished(store)
    done_at = time.time()  # the job completed at or before this
    sweeper = janitor(store, storage)

    assert await sweeper.run_once(done_at - 1 + FILE_TTL) == PurgeCounts(0, 0)
    assert result_file(storage, job.id).exists()

    assert await sweeper.run_once(done_at + FILE_TTL + 1) == PurgeCounts(files=1, records=0)
    assert not result_file(storage, job.id).exists()
    kept = await stored(store, job.id)
    assert kept.files_purged_at == pytest.approx(done_at + FILE_TTL + 1)
    assert kept.status is Status.COMPLETED
    assert await sweeper.run_once(done_at + FILE_TTL + 2) == PurgeCounts(0, 0)

    assert await sweeper.run_once(done_at - 1 + RECORD_TTL) == PurgeCounts(0, 0)
    assert await sweeper.run_once(done_at + RECORD_TTL + 1) == PurgeCounts(files=0, records=1)
    assert await store.get_job(job.id) is None

    assert await sweeper.run_once(done_at + 10**9) == PurgeCounts(0, 0)
    assert (await stored(store, queued.id)).status is Status.QUEUED
    assert (await stored(store, running.id)).status is Status.PROCESSING


async def test_files_that_outlive_the_record_go_with_it(
    store: SQLiteJobStore, storage: LocalStorage
) -> None:
    job = await completed(store, storage)
    sweeper = janitor(store, storage, file_ttl=RECORD_TTL * 10)

    counts = await sweeper.run_once(time.time() + RECORD_TTL + 1)

    assert counts == PurgeCounts(files=0, records=1)
    assert await store.get_job(job.id) is None
    assert not result_file(storage, job.id).parent.exists()


async def test_a_backlog_larger_than_one_batch_is_purged_in_one_pass(
    store: SQLiteJobStore, storage: LocalStorage
) -> None:
    jobs = [await completed(store, storage) for _ in range(7)]
    sweeper = janitor(store, storage, batch_size=3)
    now = time.time()

    assert await sweeper.run_once(now + FILE_TTL + 1) == PurgeCounts(files=7, records=0)
    assert not any(result_file(storage, j.id).exists() for j in jobs)
    assert await sweeper.run_once(now + RECORD_TTL + 1) == PurgeCounts(files=0, records=7)


async def test_the_loop_runs_at_start_and_survives_a_failed_pass(
    store: SQLiteJobStore, storage: LocalStorage, monkeypatch: pytest.MonkeyPatch
) -> None:
    job = await completed(store, storage)
    sweeper = janitor(store, storage, interval=0.01, clock=lambda: time.time() + RECORD_TTL + 1)
    real = store.delete_jobs_before
    calls = 0

    async def flaky(cutoff: float, limit: int) -> list[str]:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise RuntimeError("the database hiccuped")
        return await real(cutoff, limit)

    monkeypatch.setattr(store, "delete_jobs_before", flaky)
    sweeper.start()
    try:
        deadline = time.monotonic() + 5
        while await store.get_job(job.id) is not None:
            assert time.monotonic() < deadline, "the janitor never purged the job"
            await asyncio.sleep(0.01)
        assert sweeper.running
    finally:
        await sweeper.stop()
    assert not sweeper.running
    assert calls >= 2


async def test_the_app_runs_the_janitor_with_its_settings(tmp_path: Path) -> None:
    settings = make_settings(
        tmp_path, file_ttl_seconds=600, record_ttl_seconds=2 * 86400, purge_interval_seconds=60
    )
    async with running(settings) as (_client, gw):
        assert gw.janitor.running
        assert (gw.janitor.file_ttl, gw.janitor.record_ttl) == (600, 2 * 86400)
        assert gw.janitor.interval == 60
    assert not gw.janitor.running


def test_records_must_be_kept_at_least_a_day(tmp_path: Path) -> None:
    with pytest.raises(ValidationError, match="record_ttl_seconds"):
        make_settings(tmp_path, record_ttl_seconds=86399)
    assert make_settings(tmp_path, record_ttl_seconds=86400).record_ttl_seconds == 86400


def test_retention_defaults_and_the_old_file_ttl_variable(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    defaults = make_settings(tmp_path)
    assert defaults.file_ttl_seconds == 24 * 3600
    assert defaults.record_ttl_seconds == 7 * 24 * 3600
    assert defaults.purge_interval_seconds == 300
    monkeypatch.setenv("BACKSERV_FILE_URL_TTL_SECONDS", "3600")
    assert make_settings(tmp_path).file_ttl_seconds == 3600
    monkeypatch.setenv("BACKSERV_FILE_TTL_SECONDS", "7200")
    assert make_settings(tmp_path).file_ttl_seconds == 7200
