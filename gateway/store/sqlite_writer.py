"""The SQLite store's group-committing writer: one connection, in a thread of its own.

Writers enqueue an operation (a plain function of a ``sqlite3.Connection``) or a new job's
row, and await it; the writer thread takes everything queued at once and runs it in one
``BEGIN IMMEDIATE`` transaction (new jobs in a single ``executemany``), commits once, hands
the outcomes to the event loop and takes the next batch. A write that fails, fails alone (a
savepoint each; a bad row of the ``executemany`` sends its batch's inserts one by one); a
failed commit fails the batch. A write is answered only after the commit that holds it.

A mixin of ``SQLiteJobStore``, whose ``open`` and ``close`` set up and tear down the
connection and its thread, and start and stop the writer's loop in it (the state declared
below).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import queue
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
    ordered_writes = True  # one queue, one writer, batches in order, inserts first in each

    # SQLiteJobStore's: set up by its open(), torn down by its close()
    _writer: sqlite3.Connection | None
    _write_thread: ThreadPoolExecutor | None
    _closed: bool
    #: the writes waiting for the writer thread (None: stop); a thread-safe queue, so the
    #: thread takes its next batch itself, as soon as the last one committed
    _pending: queue.SimpleQueue[Write | None]
    #: the writes of this turn of the event loop, handed to the thread together at the next
    #: turn: writes made in one turn, and those of the tasks it wakes (a claim woken by a
    #: submit, queued behind its insert), share a batch rather than racing the thread
    _turn: list[Write]
    _writer_done: asyncio.Future[None] | None
    _stop_now: bool

    def _start_writer(self) -> None:
        """Start the writer thread's loop (the connection is open)."""
        assert self._writer is not None and self._write_thread is not None
        loop = asyncio.get_running_loop()
        self._stop_now = False
        self._writer_done = loop.run_in_executor(
            self._write_thread, self._write_loop, self._writer, loop
        )

    async def _stop_writer(self, grace: float) -> None:
        """Commit what is already queued (up to ``grace`` seconds; a batch the thread has
        begun runs to its end all the same), then stop the writer thread; what is still
        queued then fails with ``closed_error``."""
        self._hand_over()
        done = self._writer_done
        if done is not None:
            self._pending.put(None)
            try:
                await asyncio.wait_for(asyncio.shield(done), grace)
            except TimeoutError:
                self._stop_now = True  # the thread stops after the batch it is running
                await done
            self._writer_done = None
        while True:
            try:
                write = self._pending.get_nowait()
            except queue.Empty:
                break
            if write is not None and not write.future.done():
                write.future.set_exception(closed_error())

    def _write_loop(self, conn: sqlite3.Connection, loop: asyncio.AbstractEventLoop) -> None:
        """The writer thread: take every queued write (up to ``MAX_BATCH``), run them in one
        transaction, hand the outcomes to the event loop, and go on with the next batch at
        once: the writes queued meanwhile wait for the thread, never for the event loop to
        answer the last batch's callers first (when the loop is busy, that took longer than
        the batch itself)."""
        while not self._stop_now:
            first = self._pending.get()
            if first is None:
                return
            batch, stop = [first], False
            while len(batch) < MAX_BATCH:
                try:
                    write = self._pending.get_nowait()
                except queue.Empty:
                    break
                if write is None:
                    stop = True
                    break
                batch.append(write)
            try:
                outcomes = _run_batch(conn, batch)
            except Exception as exc:  # the commit itself failed: nothing in the batch holds
                log.exception("write batch of %d failed", len(batch))
                _answer(loop, self._fail_all, batch, exc)
            else:
                _answer(loop, self._settle, batch, outcomes)
            if stop:
                return

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
        if not self._turn:
            asyncio.get_running_loop().call_soon(self._hand_over)
        self._turn.append(write)

    def _hand_over(self) -> None:
        writes, self._turn = self._turn, []
        for write in writes:
            self._pending.put(write)

    async def _write(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """Run ``fn`` in the writer thread, in the next batch's transaction; its result once
        that transaction committed."""
        future: asyncio.Future[T] = asyncio.get_running_loop().create_future()
        self._enqueue(Write(fn, None, future))
        return await future


def _answer(loop: asyncio.AbstractEventLoop, answer: Callable[..., None], *args: Any) -> None:
    """Call ``answer(*args)`` on the event loop (from the writer thread); nothing when the
    loop is closed already (its callers are gone with it)."""
    with contextlib.suppress(RuntimeError):
        loop.call_soon_threadsafe(answer, *args)
