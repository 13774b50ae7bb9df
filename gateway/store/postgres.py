"""The replicated JobStore: PostgreSQL through asyncpg, for several gateway replicas.

Each replica holds a connection pool; nothing is shared in memory, the database arbitrates:

- **Inserts are group-committed.** ``insert_job`` enqueues its row and awaits; one writer
  task drains the queue and stores everything pending in one transaction with a single
  ``executemany``. A row that fails (a duplicate id, or an idempotency key its owner already
  used: ``DuplicateIdempotencyKey``) is isolated by replaying that batch row by row under
  savepoints, so its neighbours still commit. A job is acknowledged only after the commit
  that holds it.
- **Everything else is one statement, or one short transaction, on the pool.** Claims take
  rows with ``FOR UPDATE SKIP LOCKED``; with a lane limit they first take the lane's advisory
  lock, so replicas count and claim a lane's running jobs one at a time. Every write that ends
  or changes an attempt is fenced by ``lease_token``, as in the SQLite store.
- **Wake-ups, job changes and key changes ride LISTEN/NOTIFY** (postgres_notify.py): a
  committed insert batch, a release and a requeue notify ``backserv_work``; a cancel notifies
  ``backserv_cancel`` with the job id; one dedicated, supervised listener connection hears
  them (``Listener``, postgres_listen.py).

The edits of stored jobs outside their run (retention, meta, priority, route, deletion) are
in postgres_edits.py; the API keys, the spend and the webhooks are mixins of their own too.

Every statement has a deadline (``command_timeout``). Pool connections are handed back
without asyncpg's ``RESET ALL``/``UNLISTEN``/``pg_advisory_unlock_all`` round trip: the store
never changes session state (``search_path`` is a start-up setting, advisory locks are
transaction-scoped), so a read such as ``get_job`` is one round trip.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Sequence
from typing import Any

import asyncpg

from gateway.errors import DuplicateIdempotencyKey, ServiceUnavailable, StaleLease
from gateway.jobs import Attempt, Job, Status
from gateway.spend import JobSpend, spend_of
from gateway.store import postgres_schema as sql
from gateway.store.base import JobStore
from gateway.store.postgres_edits import PostgresEdits
from gateway.store.postgres_keys import PostgresKeys
from gateway.store.postgres_notify import PostgresNotify
from gateway.store.postgres_schema import dumps, job_row, migrate, quote_ident, rowcount
from gateway.store.postgres_spend import PostgresSpend, record_spend
from gateway.store.postgres_webhooks import PostgresWebhooks
from gateway.store.rows import dump_attempts, row_to_job
from gateway.store.transitions import check_finish

log = logging.getLogger("backserv.store")

COMMAND_TIMEOUT = 30.0  # seconds, for every statement on every connection
CLOSE_GRACE = 10.0  # seconds close() waits for pending inserts, then for busy connections
MAX_BATCH = 512


async def _keep_session(conn: Any) -> None:
    """Pool reset hook: asyncpg still rolls back an open transaction; nothing else to undo."""


class _Insert:
    __slots__ = ("future", "row")

    def __init__(self, row: tuple[Any, ...], future: asyncio.Future[None]) -> None:
        self.row = row
        self.future = future


def _row_failure(exc: Exception) -> Exception:
    """A taken idempotency key becomes ``DuplicateIdempotencyKey``; anything else stays."""
    if (
        isinstance(exc, asyncpg.UniqueViolationError)
        and exc.constraint_name == sql.IDEMPOTENCY_INDEX
    ):
        return DuplicateIdempotencyKey()
    return exc


def _settle(batch: list[_Insert], failures: dict[int, BaseException]) -> None:
    for i, w in enumerate(batch):
        if not w.future.done():
            if i in failures:
                w.future.set_exception(failures[i])
            else:
                w.future.set_result(None)


# PostgresNotify comes first: it provides what the other mixins leave abstract (``instance``,
# ``_publish``)
class PostgresJobStore(
    PostgresNotify, PostgresEdits, PostgresKeys, PostgresSpend, PostgresWebhooks, JobStore
):
    def __init__(
        self,
        url: str,
        *,
        min_connections: int = 2,
        max_connections: int = 10,
        schema: str | None = None,
    ) -> None:
        super().__init__()  # PostgresNotify's state too
        self.url = url
        self.schema = schema
        self.min_connections = min_connections
        self.max_connections = max_connections
        self._pool = None
        self._queue: asyncio.Queue[_Insert | None] | None = None
        self._writer_task: asyncio.Task[None] | None = None
        self._lane_lock_prefix = f"backserv.lane:{schema or ''}:"

    # -- lifecycle ----------------------------------------------------------------------

    async def open(self) -> None:
        settings = {"application_name": "backserv"}
        if self.schema is not None:
            settings["search_path"] = quote_ident(self.schema)
        pool = await asyncpg.create_pool(
            self.url,
            min_size=self.min_connections,
            max_size=self.max_connections,
            command_timeout=COMMAND_TIMEOUT,
            server_settings=settings,
            reset=_keep_session,
        )
        try:
            async with pool.acquire() as conn:
                await migrate(conn, self.schema)
        except BaseException:
            await pool.close()
            raise
        self._pool = pool
        self._queue = asyncio.Queue()
        self._writer_task = asyncio.create_task(self._write_loop(self._queue), name="pg-writer")
        self._start_listener()

    async def close(self) -> None:
        queue, self._queue = self._queue, None  # from now on insert_job refuses
        if self._writer_task is not None and queue is not None:
            queue.put_nowait(None)  # the writer commits what is ahead of this, then stops
            with contextlib.suppress(TimeoutError):  # on timeout wait_for cancels the writer
                await asyncio.wait_for(self._writer_task, CLOSE_GRACE)
            self._writer_task = None
        while queue is not None and not queue.empty():
            pending = queue.get_nowait()
            if pending is not None and not pending.future.done():
                pending.future.set_exception(
                    ServiceUnavailable("The gateway is shutting down.", code="shutting_down")
                )
        if self._listener is not None:
            await self._listener.stop()
            self._listener = None
        pool, self._pool = self._pool, None
        if pool is not None:
            try:
                await asyncio.wait_for(pool.close(), CLOSE_GRACE)
            except TimeoutError:
                log.warning("closing the pool timed out; terminating its connections")
                pool.terminate()

    @property
    def pool(self) -> Any:
        """The asyncpg pool (``RuntimeError`` while the store is not open)."""
        if self._pool is None:
            raise RuntimeError("the store is not open")
        return self._pool

    # -- the group-committing writer ----------------------------------------------------

    async def _write_loop(self, queue: asyncio.Queue[_Insert | None]) -> None:
        stop = False
        while not stop:
            first = await queue.get()
            if first is None:
                return
            batch = [first]
            while len(batch) < MAX_BATCH and not queue.empty():
                item = queue.get_nowait()
                if item is None:
                    stop = True
                    break
                batch.append(item)
            try:
                _settle(batch, await self._commit(batch))
            except asyncio.CancelledError:
                _settle(batch, dict.fromkeys(range(len(batch)), RuntimeError("store closed")))
                raise
            except Exception as exc:  # the connection or the commit failed: nothing holds
                log.exception("insert batch of %d failed", len(batch))
                _settle(batch, dict.fromkeys(range(len(batch)), exc))

    async def _commit(self, batch: list[_Insert]) -> dict[int, BaseException]:
        """Insert the batch; return the failure of each row that could not be stored."""
        async with self.pool.acquire() as conn:
            try:
                async with conn.transaction():
                    await conn.executemany(sql.INSERT_JOB, [w.row for w in batch])
                    await conn.execute(sql.NOTIFY_WORK)
                return {}
            except asyncpg.PostgresError:  # one bad row: replay one by one to isolate it
                pass
            failures: dict[int, BaseException] = {}
            async with conn.transaction():
                for i, w in enumerate(batch):
                    try:
                        async with conn.transaction():  # a savepoint per row
                            await conn.execute(sql.INSERT_JOB, *w.row)
                    except asyncpg.PostgresError as exc:
                        failures[i] = _row_failure(exc)
                if len(failures) < len(batch):
                    await conn.execute(sql.NOTIFY_WORK)
            return failures

    # -- jobs: faces --------------------------------------------------------------------

    async def insert_job(self, job: Job) -> None:
        if self._queue is None:
            raise ServiceUnavailable(
                "The gateway's database is not open (shutting down?); try again.",
                code="shutting_down",
            )
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._queue.put_nowait(_Insert(job_row(job), future))
        await future

    async def get_job(self, job_id: str) -> Job | None:
        row = await self.pool.fetchrow(sql.SELECT_JOB, job_id)
        return None if row is None else row_to_job(row)

    async def find_by_idempotency_key(self, owner: str, key: str) -> Job | None:
        row = await self.pool.fetchrow(sql.FIND_BY_IDEMPOTENCY_KEY, owner, key)
        return None if row is None else row_to_job(row)

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
        statement, params = sql.list_jobs_query(
            owner, after, status, model, limit + 1, meta, kinds, offset, oldest_first
        )
        rows = await self.pool.fetch(statement, *params)
        return [row_to_job(r) for r in rows[:limit]], len(rows) > limit

    async def cancel(self, job_id: str) -> Job | None:
        now = time.time()
        async with self.pool.acquire() as conn, conn.transaction():
            row = await conn.fetchrow(sql.CANCEL, now, job_id)
            if row is None:
                return None
            job = row_to_job(row)
            await record_spend(conn, spend_of(job, now))
        self._publish([job_id])
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
        now = time.time()
        args = (lane, worker, now + lease_seconds, now)
        async with self.pool.acquire() as conn:
            if lane_limit is None:
                rows = await conn.fetch(sql.CLAIM, *args, limit)
            else:
                async with conn.transaction():
                    # The count is a statement of its own, after the lock: in READ COMMITTED
                    # a statement sees what committed before it began, so only then does it
                    # see the claims of whichever replica held the lock before us.
                    await conn.execute(sql.LANE_LOCK, self._lane_lock_prefix + lane)
                    running = int(await conn.fetchval(sql.COUNT_RUNNING, lane))
                    take = min(limit, lane_limit - running)
                    if take <= 0:
                        return []
                    rows = await conn.fetch(sql.CLAIM, *args, take)
        jobs = [row_to_job(r) for r in rows]
        self._publish([j.id for j in jobs])
        return jobs

    async def heartbeat(
        self, worker: str, tokens: dict[str, int], lease_seconds: float
    ) -> set[str]:
        if not tokens:
            return set()
        expires = time.time() + lease_seconds
        rows = await self.pool.fetch(
            sql.HEARTBEAT, expires, list(tokens), list(tokens.values()), worker
        )
        return {r[0] for r in rows}

    async def save_progress(
        self, job_id: str, token: int, progress: int, queue_position: int | None
    ) -> None:
        now = time.time()
        done = await self.pool.execute(
            sql.SAVE_PROGRESS, progress, queue_position, now, job_id, token
        )
        if rowcount(done):
            self._publish([job_id])

    async def save_attempts(
        self,
        job_id: str,
        token: int,
        attempts: list[Attempt],
        *,
        active_only: bool = False,
    ) -> None:
        statement = sql.SAVE_ATTEMPTS_ACTIVE if active_only else sql.SAVE_ATTEMPTS
        done = await self.pool.execute(
            statement, dump_attempts(attempts), time.time(), job_id, token
        )
        if rowcount(done) == 0:
            raise StaleLease(f"job {job_id}: lease token {token} is stale or the job ended")
        self._publish([job_id])

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
        args = (
            status.value,
            None if result is None else dumps(result),
            None if error is None else dumps(error),
            None if attempts is None else dump_attempts(attempts),
            time.time(),
            job_id,
            token,
        )
        if spend is None:  # an unpriced job: the one statement, as ever
            done = await self.pool.execute(sql.FINISH, *args)
        else:
            async with self.pool.acquire() as conn, conn.transaction():
                done = await conn.execute(sql.FINISH, *args)
                if rowcount(done):
                    await record_spend(conn, spend)
        if rowcount(done) == 0:
            raise StaleLease(f"job {job_id}: not PROCESSING under lease token {token}")
        self._publish([job_id])

    async def release(self, job_id: str, token: int, attempts: list[Attempt]) -> None:
        if await self.pool.fetchval(
            sql.RELEASE, dump_attempts(attempts), time.time(), job_id, token
        ):
            self._publish([job_id])

    async def requeue_expired(self, now: float) -> int:
        ids = [r[0] for r in await self.pool.fetch(sql.REQUEUE_EXPIRED, now)]
        if ids:
            await self.pool.execute(sql.NOTIFY_WORK)
            self._publish(ids)
        return len(ids)

    async def count_active(self, owner: str) -> int:
        return int(await self.pool.fetchval(sql.COUNT_ACTIVE, owner))

    async def count_by_status_and_lane(self) -> dict[tuple[Status, str], int]:
        rows = await self.pool.fetch(sql.COUNT_BY_STATUS_AND_LANE)
        return {(Status(status), lane): int(n) for status, lane, n in rows}

    async def recent_latencies(self, limit: int) -> list[tuple[str, float]]:
        rows = await self.pool.fetch(sql.RECENT_LATENCIES, limit)
        return [(str(r[0]), float(r[1])) for r in rows]

    # -- metadata (the API keys are in postgres_keys.py) -----------------------------

    async def get_meta(self, key: str) -> str | None:
        value = await self.pool.fetchval(sql.GET_META, key)
        return None if value is None else str(value)

    async def set_meta_if_absent(self, key: str, value: str) -> str:
        return str(await self.pool.fetchval(sql.SET_META_IF_ABSENT, key, value))
