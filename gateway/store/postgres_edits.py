"""The PostgreSQL store's edits of stored jobs outside their run: retention (files purged,
records deleted), meta values, priority, a queued job's route, and deletion.

A mixin of ``PostgresJobStore``: every statement runs on its ``pool`` (the SQL text is in
postgres_schema.py, with the jobs table's), and each committed change is published
(``_publish``: to the listeners here, and through one NOTIFY to the other replicas), as the
store's other writes are.
"""

from __future__ import annotations

import time
from abc import abstractmethod
from typing import Any

import orjson

from gateway.jobs import Job
from gateway.store import postgres_schema as sql
from gateway.store.base import META_KEY, JobStore
from gateway.store.postgres_schema import dumps, rowcount


class PostgresEdits(JobStore):
    @property
    @abstractmethod
    def pool(self) -> Any:
        """The asyncpg pool (PostgresJobStore's)."""

    @abstractmethod
    def _publish(self, job_ids: list[str]) -> None:
        """Tell the listeners here and at the other replicas (PostgresNotify's)."""

    # -- retention ----------------------------------------------------------------------

    async def jobs_with_files_before(self, cutoff: float, limit: int) -> list[str]:
        rows = await self.pool.fetch(sql.JOBS_WITH_FILES_BEFORE, cutoff, limit)
        return [r[0] for r in rows]

    async def mark_files_purged(self, job_ids: list[str], now: float) -> int:
        if not job_ids:
            return 0
        marked = rowcount(await self.pool.execute(sql.MARK_FILES_PURGED, now, job_ids))
        if marked:
            self._publish(job_ids)
        return marked

    async def delete_jobs_before(self, cutoff: float, limit: int) -> list[str]:
        if limit <= 0:
            return []
        ids = [r[0] for r in await self.pool.fetch(sql.DELETE_JOBS_BEFORE, cutoff, limit)]
        self._publish(ids)
        return ids

    async def set_meta_value(self, job_id: str, path: tuple[str, ...], value: Any) -> bool:
        if not path or not all(META_KEY.match(p) for p in path):
            raise ValueError(f"not a meta path of plain names: {path!r}")
        async with self.pool.acquire() as conn, conn.transaction():
            row = await conn.fetchrow(sql.LOCK_META, job_id)
            if row is None:
                return False
            meta = orjson.loads(row[0]) if isinstance(row[0], str | bytes) else dict(row[0])
            node = meta
            for name in path[:-1]:
                child = node.get(name)
                if not isinstance(child, dict):
                    child = {}
                    node[name] = child
                node = child
            node[path[-1]] = value
            await conn.execute(sql.SET_META, dumps(meta), time.time(), job_id)
        self._publish([job_id])
        return True

    async def set_priority(self, job_id: str, priority: int) -> bool:
        done = await self.pool.execute(sql.SET_PRIORITY, priority, time.time(), job_id)
        return self._published(job_id, rowcount(done) > 0)

    async def reroute_queued(
        self, job: Job, *, model: str, lane: str, input: dict[str, Any], meta: dict[str, Any]
    ) -> bool:
        done = await self.pool.execute(
            sql.REROUTE_QUEUED,
            model,
            lane,
            dumps(input),
            dumps(meta),
            time.time(),
            job.id,
            job.updated_at,
        )
        return self._published(job.id, rowcount(done) > 0)

    async def delete_job(self, job_id: str) -> bool:
        return self._published(job_id, await self.pool.fetchval(sql.DELETE_JOB, job_id) is not None)
