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
- **Wake-ups ride LISTEN/NOTIFY.** A committed insert batch, a release and a requeue notify
  ``backserv_work``; a cancel notifies ``backserv_cancel`` with the job id. Subscribers are
  served by a dedicated, supervised listener connection (``Listener``).
- **Key changes too.** A revocation or an update of a key notifies ``backserv_key`` in its
  own transaction. ``key_epoch`` moves at every key change heard (local or not) and at every
  connect and loss of the listener, and is None while it is down: a replica keeps what it
  read of a key only while it is sure to hear of the key's next change.

Every statement has a deadline (``command_timeout``). Pool connections are handed back
without asyncpg's ``RESET ALL``/``UNLISTEN``/``pg_advisory_unlock_all`` round trip: the store
never changes session state (``search_path`` is a start-up setting, advisory locks are
transaction-scoped), so a read such as ``get_job`` is one round trip.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import time
from collections.abc import Callable, Sequence
from typing import Any

import asyncpg
import orjson

from gateway.errors import DuplicateIdempotencyKey, ServiceUnavailable, StaleLease
from gateway.jobs import Attempt, Job, Status
from gateway.spend import JobSpend, spend_of
from gateway.store import postgres_schema as sql
from gateway.store.base import META_KEY, JobStore
from gateway.store.postgres_keys import PostgresKeys
from gateway.store.postgres_listen import Listener, OnCancel, OnWork
from gateway.store.postgres_schema import dumps, job_row, migrate, quote_ident, rowcount
from gateway.store.postgres_spend import PostgresSpend, record_spend
from gateway.store.postgres_webhooks import PostgresWebhooks
from gateway.store.rows import dump_attempts, row_to_job
from gateway.store.transitions import check_finish

log = logging.getLogger("backserv.store")

COMMAND_TIMEOUT = 30.0  # seconds, for every statement on every connection
CLOSE_GRACE = 10.0  # seconds close() waits for pending inserts, then for busy connections
MAX_BATCH = 512
#: the largest NOTIFY payload sent (PostgreSQL refuses 8,000 bytes and more)
MAX_NOTIFY_BYTES = 7900


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


class PostgresJobStore(PostgresKeys, PostgresSpend, PostgresWebhooks, JobStore):
    def __init__(
        self,
        url: str,
        *,
        min_connections: int = 2,
        max_connections: int = 10,
        schema: str | None = None,
    ) -> None:
        super().__init__()
        self.url = url
        self._instance = secrets.token_hex(6)
        self._notify_pending: set[str] = set()
        self._notify_task: asyncio.Task[None] | None = None
        self.schema = schema
        self.min_connections = min_connections
        self.max_connections = max_connections
        self._pool: Any = None
        self._queue: asyncio.Queue[_Insert | None] | None = None
        self._writer_task: asyncio.Task[None] | None = None
        self._subscribers: list[tuple[OnWork, OnCancel]] = []
        self._listener: Listener | None = None
        self._key_epoch = 0
        self._keys_live = False
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

    # -- notifications ------------------------------------------------------------------

    def subscribe(self, on_work: OnWork, on_cancel: OnCancel) -> None:
        """Call ``on_work()`` when any replica queues work, ``on_cancel(id)`` on a cancel.

        Callbacks run on the event loop and must not block. Subscribing the same pair again
        (a restarted scheduler) registers it once. The listener starts now if the store is
        open, else in ``open()``.
        """
        if (on_work, on_cancel) not in self._subscribers:
            self._subscribers.append((on_work, on_cancel))
        self._start_listener()

    @property
    def listener_pid(self) -> int | None:
        """The server pid of the listener connection while it is connected, else None."""
        return None if self._listener is None else self._listener.pid

    def _start_listener(self) -> None:
        wanted = (
            self._subscribers
            or self._change_listeners
            or self._delivery_listeners
            or self._key_listeners
        )
        if self._listener is None and wanted and self._pool is not None:
            self._listener = Listener(
                self.url,
                self._work,
                self._cancelled,
                self._remote_change,
                self._relayed,
                on_key=self._remote_key_change,
                on_live=self._listening,
            )
            self._listener.start()

    def watch_keys(self, listener: Callable[[str], None]) -> None:
        super().watch_keys(listener)
        self._start_listener()

    async def key_epoch(self) -> int | None:
        return self._key_epoch if self._keys_live else None

    def _keys_changed(self, key_id: str) -> None:
        """A key changed, here (after the commit) or at any replica (its NOTIFY)."""
        self._key_epoch += 1
        super()._keys_changed(key_id)

    @property
    def instance(self) -> str:
        return self._instance

    def _remote_key_change(self, payload: str) -> None:
        instance, _, key_id = payload.partition(":")
        if instance != self._instance and key_id:
            self._keys_changed(key_id)

    def _listening(self, live: bool) -> None:
        """The listener connected (every key change from now on will be heard) or was lost
        (changes may go unheard: nothing read by key may be kept until it is back)."""
        self._key_epoch += 1
        self._keys_live = live

    def watch_deliveries(self, listener: Callable[[str, str, str | None], None]) -> None:
        super().watch_deliveries(listener)
        self._start_listener()

    async def relay_delivery(self, provider: str, request_id: str, state: str | None) -> None:
        """Tell the other replicas through one NOTIFY (``provider``, ``request_id``, this
        store's instance, and ``state`` when the payload stays under PostgreSQL's limit,
        else nothing: "read it now"); best effort: the safety-net poll finds a delivery whose
        relay was lost."""
        if self._pool is None:
            return
        payload = f"{provider}\n{request_id}\n{self._instance}\n"
        if state and len(payload.encode()) + len(state.encode()) <= MAX_NOTIFY_BYTES:
            payload += state
        try:
            await asyncio.wait_for(self._pool.execute(sql.NOTIFY_DELIVERY, payload), 5.0)
        except Exception:
            log.exception("relaying a %s delivery failed", provider)

    def _relayed(self, payload: str) -> None:
        """A relayed delivery: for the listeners unless this replica sent it (its own
        ingress already handed it over)."""
        provider, request_id, instance, state = [*payload.split("\n", 3), "", "", ""][:4]
        if provider and request_id and instance != self._instance:
            self._delivered(provider, request_id, state or None)

    def watch_changes(self, listener: Callable[[str], None]) -> None:
        super().watch_changes(listener)
        self._start_listener()

    def _publish(self, job_ids: list[str]) -> None:
        """Tell local listeners now, and other replicas through one coalesced NOTIFY."""
        if not job_ids:
            return
        self._changed(job_ids)
        self._notify_pending.update(job_ids)
        if self._notify_task is None or self._notify_task.done():
            self._notify_task = asyncio.get_running_loop().create_task(self._flush_notify())

    def _published(self, job_id: str, changed: bool) -> bool:
        """Publish ``job_id`` when ``changed``; return ``changed``."""
        if changed:
            self._publish([job_id])
        return changed

    async def _flush_notify(self) -> None:
        await asyncio.sleep(0)  # let the changes of this loop turn gather
        while self._notify_pending and self._pool is not None:
            ids, self._notify_pending = list(self._notify_pending), set()
            try:
                await self._pool.execute(sql.NOTIFY_CHANGED, self._instance, ids)
            except Exception:
                log.exception("notifying %d job changes failed", len(ids))

    def _remote_change(self, payload: str) -> None:
        instance, _, job_id = payload.partition(":")
        if instance != self._instance and job_id:
            self._changed([job_id])

    def _work(self) -> None:
        for on_work, _ in list(self._subscribers):
            try:
                on_work()
            except Exception:
                log.exception("a work subscriber failed")

    def _cancelled(self, job_id: str) -> None:
        for _, on_cancel in list(self._subscribers):
            try:
                on_cancel(job_id)
            except Exception:
                log.exception("a cancel subscriber failed")

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

    # -- metadata (the API keys are in postgres_keys.py) -----------------------------

    async def get_meta(self, key: str) -> str | None:
        value = await self.pool.fetchval(sql.GET_META, key)
        return None if value is None else str(value)

    async def set_meta_if_absent(self, key: str, value: str) -> str:
        return str(await self.pool.fetchval(sql.SET_META_IF_ABSENT, key, value))
