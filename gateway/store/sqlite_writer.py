"""The SQLite store's group-committing writer: one connection, in a thread of its own.

Writers enqueue an operation (a plain function of a ``sqlite3.Connection``) or a new job's
row, and await it; the writer task drains the queue and hands the whole batch to the writer
thread at once, which runs it in one ``BEGIN IMMEDIATE`` transaction (new jobs in a single
``executemany``) and commits once. A write that fails, fails alone (a savepoint each; a bad
row of the ``executemany`` sends its batch's inserts one by one); a failed commit fails the
batch. A write is answered only after the commit that holds it.

A mixin of ``SQLiteJobStore``, whose ``open`` and ``close`` set up and tear down the
connection, its thread and the writer task (the state declared below).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sqlite3
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

from gateway.errors import DuplicateIdempotencyKey, ServiceUnavailable
from gateway.store.base import JobStore
from gateway.store.sqlite_sync import fetchall

log = logging.getLogger("backserv.store")

T = TypeVar("T")
Op = Callable[[sqlite3.Connection], Any]

INSERT_JOB = (
    "INSERT INTO jobs (id, owner, kind, model, lane, status, priority, progress, input, "
    "attempts, meta, created_at, updated_at, idempotency_key, request_hash) "
    "VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)"
)
_KEY_TAKEN = "SELECT 1 FROM jobs WHERE owner = ? AND idempotency_key = ?"
MAX_BATCH = 512


def closed_error() -> ServiceUnavailable:
    return ServiceUnavailable("The gateway is shutting down; try again.", code="shutting_down")


def _insert_failure(conn: sqlite3.Connection, row: tuple[Any, ...], exc: Exception) -> Exception:
    """The error to report for a row of ``INSERT_JOB`` that failed with ``exc``: a taken
    idempotency key becomes ``DuplicateIdempotencyKey`` (looked up, not read off the
    message text)."""
    owner, key = row[1], row[13]
    if (
        key is not None
        and isinstance(exc, sqlite3.IntegrityError)
        and list(fetchall(conn, _KEY_TAKEN, (owner, key)))
    ):
        return DuplicateIdempotencyKey()
    return exc


class Write:
    __slots__ = ("fn", "future", "insert")

    def __init__(self, fn: Op | None, insert: tuple[Any, ...] | None, future: asyncio.Future[Any]):
        self.fn = fn
        self.insert = insert
        self.future = future


#: what the writer thread reports for each write of a batch: (write, value, failure)
_Outcome = tuple[Write, Any, BaseException | None]


def _run_batch(conn: sqlite3.Connection, batch: list[Write]) -> list[_Outcome]:
    """Every write of ``batch`` in one transaction, committed once (in the writer thread).

    A write that raises fails alone (its statements are rolled back to a savepoint); the
    others commit. A failing commit raises, and then nothing of the batch holds."""
    results: list[_Outcome] = []
    conn.execute("BEGIN IMMEDIATE")
    try:
        inserts = [(w, w.insert) for w in batch if w.insert is not None]
        if inserts:
            try:
                conn.executemany(INSERT_JOB, [row for _, row in inserts])
                results.extend((w, None, None) for w, _ in inserts)
            except Exception:  # one bad row: start over, inserting one by one to isolate it
                conn.execute("ROLLBACK")  # nothing but these inserts ran in this transaction
                conn.execute("BEGIN IMMEDIATE")
                for w, row in inserts:
                    try:
                        conn.execute(INSERT_JOB, row)
                        results.append((w, None, None))
                    except Exception as exc:
                        results.append((w, None, _insert_failure(conn, row, exc)))
        for w in batch:
            if w.fn is None:
                continue
            conn.execute("SAVEPOINT op")
            try:
                value = w.fn(conn)
            except Exception as exc:
                conn.execute("ROLLBACK TO op")
                results.append((w, None, exc))
            else:
                results.append((w, value, None))
            conn.execute("RELEASE op")
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise
    return results


class SQLiteWriter(JobStore):
    # SQLiteJobStore's: set up by its open(), torn down by its close()
    _writer: sqlite3.Connection | None
    _write_thread: ThreadPoolExecutor | None
    _queue: asyncio.Queue[Write]
    _closed: bool

    async def _write_loop(self) -> None:
        assert self._writer is not None and self._write_thread is not None
        conn, thread = self._writer, self._write_thread
        loop = asyncio.get_running_loop()
        while True:
            batch = [await self._queue.get()]
            while len(batch) < MAX_BATCH and not self._queue.empty():
                batch.append(self._queue.get_nowait())
            running = loop.run_in_executor(thread, _run_batch, conn, batch)
            try:
                self._settle(batch, await asyncio.shield(running))
            except asyncio.CancelledError:
                # closing: the batch runs on to its end in the writer thread (a thread cannot
                # be stopped half-way); its callers still learn what it did, then we stop
                with contextlib.suppress(Exception):
                    self._settle(batch, await running)
                self._fail_all(batch, closed_error())  # only those not answered above
                raise
            except Exception as exc:  # the commit itself failed: nothing in the batch holds
                log.exception("write batch of %d failed", len(batch))
                self._fail_all(batch, exc)
            finally:
                for _ in batch:
                    self._queue.task_done()

    @staticmethod
    def _settle(batch: list[Write], outcomes: list[_Outcome]) -> None:
        for w, value, failure in outcomes:
            if w.future.done():
                continue
            if failure is not None:
                w.future.set_exception(failure)
            else:
                w.future.set_result(value)

    @staticmethod
    def _fail_all(batch: list[Write], exc: Exception) -> None:
        for w in batch:
            if not w.future.done():
                w.future.set_exception(exc)

    def _enqueue(self, write: Write) -> None:
        if self._closed:
            raise closed_error()
        self._queue.put_nowait(write)

    async def _write(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """Run ``fn`` in the writer thread, in the next batch's transaction; its result once
        that transaction committed."""
        future: asyncio.Future[T] = asyncio.get_running_loop().create_future()
        self._enqueue(Write(fn, None, future))
        return await future
