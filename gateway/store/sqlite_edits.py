"""The SQLite store's edits of stored jobs outside their run: retention (files purged,
records deleted), meta values, priority, a queued job's route, and deletion.

A mixin of ``SQLiteJobStore``: every write goes through its group-committing ``_write``
and reads through its reader connection (``_read``); each committed change is published to
the change hub (``JobStore._changed``), as the store's other writes are.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

from gateway.jobs import Job
from gateway.store.base import META_KEY, JobStore
from gateway.store.sqlite_sync import FINISHED as _FINISHED
from gateway.store.sqlite_sync import dumps as _dumps
from gateway.store.sqlite_sync import fetchall

T = TypeVar("T")

_ID_CHUNK = 500  # ids per ``IN (...)``, well under SQLite's bound-parameter limit


class SQLiteEdits(JobStore):
    if TYPE_CHECKING:  # provided by SQLiteJobStore

        async def _write(self, fn: Callable[[sqlite3.Connection], T]) -> T: ...

        async def _read(self, sql: str, params: tuple[Any, ...] = ()) -> list[Any]: ...

    # -- retention ----------------------------------------------------------------------

    async def jobs_with_files_before(self, cutoff: float, limit: int) -> list[str]:
        # without ANALYZE statistics SQLite prefers jobs_finished, which also holds every
        # job whose files are already gone: name the partial index that holds only the due
        rows = await self._read(
            f"SELECT id FROM jobs INDEXED BY jobs_files_due WHERE files_purged_at IS NULL "
            f"AND completed_at < ? AND {_FINISHED} ORDER BY completed_at LIMIT ?",
            (cutoff, limit),
        )
        return [r[0] for r in rows]

    async def mark_files_purged(self, job_ids: list[str], now: float) -> int:
        if not job_ids:
            return 0

        def op(conn: sqlite3.Connection) -> int:
            marked = 0
            for start in range(0, len(job_ids), _ID_CHUNK):
                chunk = job_ids[start : start + _ID_CHUNK]
                cur = conn.execute(
                    f"UPDATE jobs SET files_purged_at = ? WHERE files_purged_at IS NULL "
                    f"AND id IN ({','.join('?' * len(chunk))})",
                    (now, *chunk),
                )
                marked += cur.rowcount
            return marked

        marked = await self._write(op)
        if marked:
            self._changed(job_ids)
        return marked

    async def delete_jobs_before(self, cutoff: float, limit: int) -> list[str]:
        if limit <= 0:
            return []

        def op(conn: sqlite3.Connection) -> list[str]:
            rows = fetchall(
                conn,
                f"DELETE FROM jobs WHERE seq IN (SELECT seq FROM jobs WHERE completed_at < ? "
                f"AND {_FINISHED} ORDER BY completed_at LIMIT ?) RETURNING id",
                (cutoff, limit),
            )
            return [r[0] for r in rows]

        ids = await self._write(op)
        self._changed(ids)
        return ids

    async def set_meta_value(self, job_id: str, path: tuple[str, ...], value: Any) -> bool:
        if not path or not all(META_KEY.match(p) for p in path):
            raise ValueError(f"not a meta path of plain names: {path!r}")
        json_path = "$." + ".".join(path)
        now = time.time()

        def op(conn: sqlite3.Connection) -> int:
            # json_set creates missing objects along the path only for the last step, so the
            # parents are created first, each as {} when absent
            for depth in range(1, len(path)):
                parent = "$." + ".".join(path[:depth])
                conn.execute(
                    "UPDATE jobs SET meta = json_set(meta, ?, json('{}')) "
                    "WHERE id = ? AND json_type(meta, ?) IS NOT 'object'",
                    (parent, job_id, parent),
                )
            cur = conn.execute(
                "UPDATE jobs SET meta = json_set(meta, ?, json(?)), updated_at = ? WHERE id = ?",
                (json_path, _dumps(value), now, job_id),
            )
            return cur.rowcount

        return self._published(job_id, bool(await self._write(op)))

    async def set_priority(self, job_id: str, priority: int) -> bool:
        now = time.time()

        def op(conn: sqlite3.Connection) -> int:
            cur = conn.execute(
                "UPDATE jobs SET priority = ?, updated_at = ? WHERE id = ? AND status = 'QUEUED'",
                (priority, now, job_id),
            )
            return cur.rowcount

        return self._published(job_id, bool(await self._write(op)))

    async def reroute_queued(
        self, job: Job, *, model: str, lane: str, input: dict[str, Any], meta: dict[str, Any]
    ) -> bool:
        now = time.time()

        def op(conn: sqlite3.Connection) -> int:
            cur = conn.execute(
                "UPDATE jobs SET model = ?, lane = ?, input = ?, meta = ?, updated_at = ? "
                "WHERE id = ? AND status = 'QUEUED' AND updated_at IS ?",
                (model, lane, _dumps(input), _dumps(meta), now, job.id, job.updated_at),
            )
            return cur.rowcount

        return self._published(job.id, bool(await self._write(op)))

    async def delete_job(self, job_id: str) -> bool:
        def op(conn: sqlite3.Connection) -> bool:
            rows = fetchall(
                conn, f"DELETE FROM jobs WHERE id = ? AND {_FINISHED} RETURNING id", (job_id,)
            )
            return bool(list(rows))

        return self._published(job_id, await self._write(op))
