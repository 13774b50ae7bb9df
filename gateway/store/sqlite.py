"""The embedded JobStore: SQLite, WAL, group-committed writes.

One writer connection owns every write, in a thread of its own (sqlite_writer.py). Writers
enqueue an operation (a plain function of a ``sqlite3.Connection``) and await it; the writer
task drains the queue and hands the whole batch to the writer thread at once, which runs it
in one ``BEGIN IMMEDIATE`` transaction (new jobs in a single ``executemany``) and commits
once: a burst of submits costs one commit instead of one each, and one thread hand-off per
batch instead of one per statement (each hand-off waits for the GIL, up to
``sys.getswitchinterval()`` when the loop is busy: per statement, that made a batch of
scheduler updates take tens of milliseconds). Scans go through a second connection
(aiosqlite) and never wait for writes (WAL). A job is acknowledged only after the commit
that holds it.

Point reads by a unique key (a job by id or by idempotency key: every poll) run on the event
loop itself, through a third, read-only connection: a B-tree lookup takes microseconds,
far less than handing the query to a thread and waiting for the answer (each such hand-off
costs a GIL switch, up to ``sys.getswitchinterval()`` under load). That connection never
waits for a lock (``busy_timeout`` 0): when SQLite answers busy, the read goes through the
threaded reader instead. Scans and writes stay in threads.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sqlite3
import time
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import aiosqlite

from gateway.errors import StaleLease
from gateway.jobs import Attempt, Job, Status
from gateway.spend import JobSpend, spend_of
from gateway.store.base import META_KEY, JobStore
from gateway.store.rows import dump_attempts, row_to_job
from gateway.store.sqlite_edits import SQLiteEdits
from gateway.store.sqlite_keys import SQLiteKeys
from gateway.store.sqlite_schema import MIGRATIONS
from gateway.store.sqlite_spend import SQLiteSpend, record_spend
from gateway.store.sqlite_sync import connect_writer, fetchall, migrate
from gateway.store.sqlite_sync import dumps as _dumps
from gateway.store.sqlite_webhooks import SQLiteWebhooks
from gateway.store.sqlite_writer import SQLiteWriter, Write, closed_error
from gateway.store.transitions import (
    CANCELLABLE,
    CLAIMABLE,
    FINISHABLE,
    RELEASABLE,
    check_finish,
)

log = logging.getLogger("backserv.store")

JOB_COLUMNS = (
    "id, owner, kind, model, lane, status, priority, progress, queue_position, input, result, "
    "error, attempts, meta, created_at, updated_at, started_at, completed_at, lease_token, "
    "lease_owner, lease_expires, idempotency_key, request_hash, files_purged_at"
)
#: one scan of each partial index (claims, running jobs), not of the table
COUNT_ACTIVE = "SELECT count(*) FROM jobs WHERE owner = ? AND status IN ('QUEUED', 'PROCESSING')"
COUNT_BY_STATUS_AND_LANE = (
    "SELECT 'QUEUED', lane, count(*) FROM jobs WHERE status = 'QUEUED' GROUP BY lane "
    "UNION ALL "
    "SELECT 'PROCESSING', lane, count(*) FROM jobs WHERE status = 'PROCESSING' GROUP BY lane"
)
#: newest completions first, read through the partial index of finished jobs
RECENT_LATENCIES = (
    "SELECT model, completed_at - created_at FROM jobs INDEXED BY jobs_finished "
    "WHERE completed_at IS NOT NULL AND status = 'COMPLETED' ORDER BY completed_at DESC LIMIT ?"
)


def queued_lanes_sql(count: int) -> str:
    """Which of ``count`` lanes (bound in order) have a claimable job: one index seek per
    lane (``jobs_claim``), however many jobs are queued. (``SELECT DISTINCT lane`` walked
    the whole queue: 14 ms at 80,000 queued jobs, on every claim.)"""
    values = ", ".join(["(?)"] * count)
    return (
        f"WITH wanted(lane) AS (VALUES {values}) SELECT lane FROM wanted "
        f"WHERE EXISTS (SELECT 1 FROM jobs WHERE {CLAIMABLE} AND jobs.lane = wanted.lane)"
    )


CLOSE_GRACE = 10.0  # seconds close() waits for queued writes to commit


class SQLiteJobStore(SQLiteWriter, SQLiteEdits, SQLiteKeys, SQLiteSpend, SQLiteWebhooks, JobStore):
    def __init__(self, path: Path | str) -> None:
        super().__init__()
        self.path = Path(path)
        self._writer: sqlite3.Connection | None = None
        #: the writer's thread: one, so the connection is only ever used by it
        self._write_thread: ThreadPoolExecutor | None = None
        self._reader: aiosqlite.Connection | None = None
        self._point: sqlite3.Connection | None = None
        self._queue: asyncio.Queue[Write] = asyncio.Queue()
        self._writer_task: asyncio.Task[None] | None = None
        self._closed = False

    # -- lifecycle ----------------------------------------------------------------------

    async def open(self) -> None:
        self._closed = False
        if str(self.path) != ":memory:":
            self.path.parent.mkdir(parents=True, exist_ok=True)
        self._write_thread = ThreadPoolExecutor(1, thread_name_prefix="sqlite-writer")
        loop = asyncio.get_running_loop()
        self._writer = await loop.run_in_executor(
            self._write_thread, connect_writer, str(self.path)
        )
        await loop.run_in_executor(self._write_thread, migrate, self._writer, MIGRATIONS)
        self._reader = await aiosqlite.connect(str(self.path), isolation_level=None)
        await self._reader.execute("PRAGMA busy_timeout=10000")
        if str(self.path) != ":memory:":  # a second :memory: connection is another database
            self._point = sqlite3.connect(str(self.path), isolation_level=None)
            self._point.execute("PRAGMA query_only=1")
            self._point.execute("PRAGMA busy_timeout=0")
        self._writer_task = asyncio.create_task(self._write_loop(), name="sqlite-writer")

    async def close(self) -> None:
        """Commit what is already queued (up to ``CLOSE_GRACE`` seconds), then close."""
        self._closed = True
        if self._writer_task is not None:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._queue.join(), CLOSE_GRACE)
            self._writer_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._writer_task
            self._writer_task = None
        while not self._queue.empty():
            pending = self._queue.get_nowait()
            if not pending.future.done():
                pending.future.set_exception(closed_error())
        if self._reader is not None:
            await self._reader.close()
        if self._writer is not None and self._write_thread is not None:
            await asyncio.get_running_loop().run_in_executor(self._write_thread, self._writer.close)
        if self._write_thread is not None:
            self._write_thread.shutdown(wait=True)
        if self._point is not None:
            self._point.close()
        self._reader = self._writer = self._point = self._write_thread = None

    async def _read(self, sql: str, params: tuple[Any, ...] = ()) -> list[Any]:
        assert self._reader is not None, "the store is not open"
        return list(await self._reader.execute_fetchall(sql, params))

    async def _point_read(self, sql: str, params: tuple[Any, ...]) -> list[Any]:
        """A read by a unique key, on the loop (see the module's docstring)."""
        if self._point is not None:
            try:
                return self._point.execute(sql, params).fetchall()
            except sqlite3.OperationalError as exc:  # busy, locked: never wait on the loop
                log.debug("point read fell back to the reader thread: %s", exc)
        return await self._read(sql, params)

    # -- jobs: faces --------------------------------------------------------------------

    async def insert_job(self, job: Job) -> None:
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        row = (
            job.id,
            job.owner,
            job.kind,
            job.model,
            job.lane,
            job.status.value,
            job.priority,
            job.progress,
            _dumps(job.input),
            dump_attempts(job.attempts),
            _dumps(job.meta),
            job.created_at,
            job.updated_at,
            job.idempotency_key,
            job.request_hash,
        )
        self._enqueue(Write(None, row, future))
        await future

    async def get_job(self, job_id: str) -> Job | None:
        rows = await self._point_read(f"SELECT {JOB_COLUMNS} FROM jobs WHERE id = ?", (job_id,))
        return row_to_job(rows[0]) if rows else None

    async def find_by_idempotency_key(self, owner: str, key: str) -> Job | None:
        rows = await self._point_read(
            f"SELECT {JOB_COLUMNS} FROM jobs WHERE owner = ? AND idempotency_key = ?",
            (owner, key),
        )
        return row_to_job(rows[0]) if rows else None

    async def list_jobs(
        self,
        owner: str | None,
        *,
        limit: int,
        after: str | None = None,
        status: Status | None = None,
        model: str | None = None,
        meta: dict[str, str] | None = None,
        kinds: Sequence[str] | None = None,
        offset: int = 0,
        oldest_first: bool = False,
    ) -> tuple[list[Job], bool]:
        where: list[str] = []
        params: list[Any] = []
        for key, value in (meta or {}).items():
            if not META_KEY.match(key):
                raise ValueError(f"not a filterable meta key: {key!r}")
            where.append(f"json_extract(meta, '$.{key}') = ?")
            params.append(value)
        if owner is not None:
            where.append("owner = ?")
            params.append(owner)
        if after is not None:
            if oldest_first:  # an unknown cursor matches nothing either way
                where.append(
                    "seq > COALESCE((SELECT seq FROM jobs WHERE id = ?), 9223372036854775807)"
                )
            else:
                where.append("seq < COALESCE((SELECT seq FROM jobs WHERE id = ?), -1)")
            params.append(after)
        if status is not None:
            where.append("status = ?")
            params.append(status.value)
        if model is not None:
            where.append("model = ?")
            params.append(model)
        if kinds is not None:
            where.append(f"kind IN ({', '.join('?' * len(kinds)) or 'NULL'})")
            params.extend(kinds)
        clause = ("WHERE " + " AND ".join(where)) if where else ""
        rows = await self._read(
            f"SELECT {JOB_COLUMNS} FROM jobs {clause} "
            f"ORDER BY seq {'ASC' if oldest_first else 'DESC'} LIMIT ? OFFSET ?",
            (*params, limit + 1, max(0, offset)),
        )
        jobs = [row_to_job(r) for r in rows[:limit]]
        return jobs, len(rows) > limit

    async def cancel(self, job_id: str) -> Job | None:
        now = time.time()

        def op(conn: sqlite3.Connection) -> Job | None:
            rows = list(
                fetchall(
                    conn,
                    f"UPDATE jobs SET status = 'CANCELLED', completed_at = ?, updated_at = ?, "
                    f"lease_owner = NULL, lease_expires = NULL "
                    f"WHERE id = ? AND {CANCELLABLE} "
                    f"RETURNING {JOB_COLUMNS}",
                    (now, now, job_id),
                )
            )
            if not rows:
                return None
            job = row_to_job(rows[0])
            record_spend(conn, spend_of(job, now))
            return job

        job = await self._write(op)
        if job is not None:
            self._changed([job.id])
        return job

    # -- jobs: the scheduler ------------------------------------------------------------

    async def claim(
        self,
        lane: str,
        limit: int,
        worker: str,
        lease_seconds: float,
        *,
        lane_limit: int | None = None,
    ) -> list[Job]:
        if limit <= 0:
            return []
        claimed = await self._claim({lane: (limit, lane_limit)}, worker, lease_seconds)
        return claimed.get(lane, [])

    async def claim_lanes(
        self, wants: Mapping[str, tuple[int, int]], worker: str, lease_seconds: float
    ) -> dict[str, list[Job]]:
        wanted = {lane: want for lane, want in wants.items() if want[0] > 0}
        if not wanted:
            return {}
        return await self._claim(wanted, worker, lease_seconds)

    async def _claim(
        self, wants: Mapping[str, tuple[int, int | None]], worker: str, lease_seconds: float
    ) -> dict[str, list[Job]]:
        """Every lane of ``wants`` claimed in one write (one transaction, one commit); the
        lanes with nothing queued cost one statement between them, not two each (each
        statement is a wait for the GIL in the writer thread when the loop is busy)."""
        now = time.time()

        def op(conn: sqlite3.Connection) -> dict[str, list[Job]]:
            lanes = list(wants)
            if not lanes:
                return {}
            queued = {row[0] for row in fetchall(conn, queued_lanes_sql(len(lanes)), lanes)}
            return {
                lane: _claim_lane(conn, lane, limit, lane_limit, worker, now, lease_seconds)
                for lane, (limit, lane_limit) in wants.items()
                if lane in queued
            }

        claimed = await self._write(op)
        for jobs in claimed.values():
            jobs.sort(key=lambda j: (-j.priority, j.created_at))
            self._changed(j.id for j in jobs)
        return claimed

    async def heartbeat(
        self, worker: str, tokens: dict[str, int], lease_seconds: float
    ) -> set[str]:
        if not tokens:
            return set()
        expires = time.time() + lease_seconds

        def op(conn: sqlite3.Connection) -> set[str]:
            held: set[str] = set()
            for job_id, token in tokens.items():
                rows = fetchall(
                    conn,
                    "UPDATE jobs SET lease_expires = ? WHERE id = ? AND lease_token = ? "
                    "AND lease_owner = ? AND status = 'PROCESSING' RETURNING id",
                    (expires, job_id, token, worker),
                )
                held.update(r[0] for r in rows)
            return held

        return await self._write(op)

    async def save_progress(
        self, job_id: str, token: int, progress: int, queue_position: int | None
    ) -> None:
        now = time.time()

        def op(conn: sqlite3.Connection) -> int:
            cur = conn.execute(
                "UPDATE jobs SET progress = ?, queue_position = ?, updated_at = ? "
                "WHERE id = ? AND lease_token = ? AND status = 'PROCESSING'",
                (progress, queue_position, now, job_id, token),
            )
            return cur.rowcount

        if await self._write(op):
            self._changed([job_id])

    async def save_attempts(
        self,
        job_id: str,
        token: int,
        attempts: list[Attempt],
        *,
        active_only: bool = False,
    ) -> None:
        now = time.time()
        status_sql = " AND status = 'PROCESSING'" if active_only else ""
        # serialised here: the writer thread must not read attempts the runner goes on changing
        attempts_json = dump_attempts(attempts)

        def op(conn: sqlite3.Connection) -> int:
            cur = conn.execute(
                f"UPDATE jobs SET attempts = ?, updated_at = ? WHERE id = ? AND lease_token = ?"
                f"{status_sql}",
                (attempts_json, now, job_id, token),
            )
            return cur.rowcount

        if await self._write(op) == 0:
            raise StaleLease(f"job {job_id}: lease token {token} is stale or the job ended")
        self._changed([job_id])

    async def finish(
        self,
        job_id: str,
        token: int,
        status: Status,
        *,
        result: dict[str, Any] | None = None,
        error: dict[str, Any] | None = None,
        attempts: list[Attempt] | None = None,
        spend: JobSpend | None = None,
    ) -> None:
        check_finish(status)
        now = time.time()
        progress_sql = ", progress = 100" if status is Status.COMPLETED else ""
        attempts_json = None if attempts is None else dump_attempts(attempts)

        def op(conn: sqlite3.Connection) -> int:
            cur = conn.execute(
                f"UPDATE jobs SET status = ?, result = ?, error = ?, "
                f"attempts = COALESCE(?, attempts), completed_at = ?, updated_at = ?, "
                f"queue_position = NULL, lease_owner = NULL, lease_expires = NULL{progress_sql} "
                f"WHERE id = ? AND lease_token = ? AND {FINISHABLE}",
                (
                    status.value,
                    None if result is None else _dumps(result),
                    None if error is None else _dumps(error),
                    attempts_json,
                    now,
                    now,
                    job_id,
                    token,
                ),
            )
            if cur.rowcount:
                record_spend(conn, spend)
            return cur.rowcount

        if await self._write(op) == 0:
            raise StaleLease(f"job {job_id}: not PROCESSING under lease token {token}")
        self._changed([job_id])

    async def release(self, job_id: str, token: int, attempts: list[Attempt]) -> None:
        now = time.time()
        attempts_json = dump_attempts(attempts)

        def op(conn: sqlite3.Connection) -> int:
            cur = conn.execute(
                "UPDATE jobs SET status = 'QUEUED', attempts = ?, updated_at = ?, "
                "lease_owner = NULL, lease_expires = NULL "
                f"WHERE id = ? AND lease_token = ? AND {RELEASABLE}",
                (attempts_json, now, job_id, token),
            )
            return cur.rowcount

        if await self._write(op):
            self._changed([job_id])

    async def requeue_expired(self, now: float) -> int:
        def op(conn: sqlite3.Connection) -> list[str]:
            rows = fetchall(
                conn,
                "UPDATE jobs SET status = 'QUEUED', lease_owner = NULL, lease_expires = NULL, "
                f"updated_at = ? WHERE {RELEASABLE} AND lease_expires < ? "
                "RETURNING id",
                (now, now),
            )
            return [r[0] for r in rows]

        ids = await self._write(op)
        self._changed(ids)
        return len(ids)

    async def count_active(self, owner: str) -> int:
        rows = await self._read(COUNT_ACTIVE, (owner,))
        return int(rows[0][0])

    async def count_by_status_and_lane(self) -> dict[tuple[Status, str], int]:
        rows = await self._read(COUNT_BY_STATUS_AND_LANE)
        return {(Status(status), lane): int(n) for status, lane, n in rows}

    async def recent_latencies(self, limit: int) -> list[tuple[str, float]]:
        rows = await self._read(RECENT_LATENCIES, (limit,))
        return [(str(model), float(seconds)) for model, seconds in rows]

    # -- metadata (the API keys are in sqlite_keys.py) -------------------------------

    async def get_meta(self, key: str) -> str | None:
        rows = await self._read("SELECT value FROM meta WHERE key = ?", (key,))
        return str(rows[0][0]) if rows else None

    async def set_meta_if_absent(self, key: str, value: str) -> str:
        def op(conn: sqlite3.Connection) -> str:
            conn.execute(
                "INSERT INTO meta (key, value) VALUES (?, ?) ON CONFLICT (key) DO NOTHING",
                (key, value),
            )
            rows = list(fetchall(conn, "SELECT value FROM meta WHERE key = ?", (key,)))
            return str(rows[0][0])

        return await self._write(op)


def _claim_lane(
    conn: sqlite3.Connection,
    lane: str,
    limit: int,
    lane_limit: int | None,
    worker: str,
    now: float,
    lease_seconds: float,
) -> list[Job]:
    """``claim`` of one lane, in the writer thread's open transaction."""
    take = limit
    if lane_limit is not None:
        rows = fetchall(
            conn, "SELECT count(*) FROM jobs WHERE status = 'PROCESSING' AND lane = ?", (lane,)
        )
        take = min(take, lane_limit - int(next(iter(rows))[0]))
        if take <= 0:
            return []
    rows = fetchall(
        conn,
        f"UPDATE jobs SET status = 'PROCESSING', lease_token = lease_token + 1, "
        f"lease_owner = ?, lease_expires = ?, updated_at = ?, "
        f"started_at = COALESCE(started_at, ?) "
        f"WHERE seq IN (SELECT seq FROM jobs WHERE {CLAIMABLE} "
        f"AND lane = ? "
        f"ORDER BY priority DESC, seq LIMIT ?) RETURNING {JOB_COLUMNS}",
        (worker, now + lease_seconds, now, now, lane, take),
    )
    return [row_to_job(r) for r in rows]
