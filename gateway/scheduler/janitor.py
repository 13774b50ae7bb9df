"""Retention: a background loop that deletes expired result files, then expired job records.

Every ``purge_interval_seconds`` (and once at start-up) the janitor

1. deletes the files of jobs that finished more than ``file_ttl_seconds`` ago (off the event
   loop) and then marks those jobs ``files_purged_at``: their record stays readable, their
   result says ``"expired": true`` and its URLs answer 410;
2. deletes the records of jobs that finished more than ``record_ttl_seconds`` ago, and any
   files they still had (when files outlive records).

Work goes in batches of ``batch_size`` ids, so no statement holds the database for long and
submits are served in between. Jobs that are QUEUED or PROCESSING are never touched. Several
replicas may run a janitor each: deleting a file twice is harmless, and PostgreSQL hands
each replica different records to delete.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

from gateway.background import BackgroundLoop
from gateway.storage import ResultStorage
from gateway.store.base import JobStore

log = logging.getLogger("backserv.janitor")

BATCH_SIZE = 500


@dataclass(frozen=True)
class PurgeCounts:
    """What one pass did: jobs whose files were deleted, and job records deleted."""

    files: int = 0
    records: int = 0


class Janitor(BackgroundLoop):
    name = "janitor"

    def __init__(
        self,
        store: JobStore,
        storage: ResultStorage,
        *,
        file_ttl: float,
        record_ttl: float,
        interval: float = 300.0,
        batch_size: int = BATCH_SIZE,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if batch_size < 1:
            raise ValueError("batch_size must be at least 1")
        super().__init__(interval)
        self.store = store
        self.storage = storage
        self.file_ttl = file_ttl
        self.record_ttl = record_ttl
        self.batch_size = batch_size
        self.clock = clock

    # -- one pass ---------------------------------------------------------------------------

    async def run_once(self, now: float | None = None) -> PurgeCounts:
        """Purge what expired by ``now`` (default: the clock); return the counts."""
        now = self.clock() if now is None else now
        files = await self._purge_files(now - self.file_ttl, now)
        records = await self._purge_records(now - self.record_ttl)
        if files or records:
            log.info(
                "retention: deleted the files of %d job(s) and %d job record(s)", files, records
            )
        return PurgeCounts(files, records)

    async def _purge_files(self, cutoff: float, now: float) -> int:
        total = 0
        while True:
            ids = await self.store.jobs_with_files_before(cutoff, self.batch_size)
            for job_id in ids:
                await self.storage.delete(job_id)  # in a worker thread
            await self.store.mark_files_purged(ids, now)
            total += len(ids)
            if len(ids) < self.batch_size:
                return total

    async def _purge_records(self, cutoff: float) -> int:
        total = 0
        while True:
            ids = await self.store.delete_jobs_before(cutoff, self.batch_size)
            for job_id in ids:  # files outlive records when file_ttl > record_ttl
                await self.storage.delete(job_id)
            total += len(ids)
            if len(ids) < self.batch_size:
                return total

    async def step(self) -> None:
        """A retention pass (``BackgroundLoop``: every ``interval``, a failure logged)."""
        await self.run_once()
