"""Waiting for a job to change or finish without polling the database.

A waiter registers with the in-process change hub (``JobEvents``) *before* it reads the job,
so no change can slip between the read and the wait, then sleeps until the job changes (one
read per change) or the deadline passes.

``Waiting`` adds what an open HTTP wait needs: a per-key cap on waits open at once (long-polls,
synchronous image requests and event streams; one past it is a 429 ``too_many_waiters``), and
an end to a wait whose client has gone away, so an abandoned long-poll costs nothing after
its client hangs up.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable, Iterator, MutableMapping
from typing import Any

from gateway.errors import RateLimited
from gateway.events import JobEvents
from gateway.jobs import Job
from gateway.store.base import JobStore

Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]


async def wait_until_terminal(store: JobStore, events: JobEvents, job: Job, timeout: float) -> Job:
    """The job once it is terminal, or as it is when ``timeout`` seconds have passed."""
    if job.status.terminal or timeout <= 0:
        return job
    deadline = time.monotonic() + timeout
    with events.watch(job.id) as watch:
        latest = await store.get_job(job.id) or job
        while not latest.status.terminal:
            remaining = deadline - time.monotonic()
            if remaining <= 0 or not await watch.changed(remaining):
                break
            latest = await store.get_job(job.id) or latest
    return latest


async def _disconnected(receive: Receive) -> None:
    """Returns when the client has gone (the request body, if any, was read before)."""
    while (await receive())["type"] != "http.disconnect":
        pass


class Waiting:
    """Open waits, counted per key, each ended early when its client disconnects."""

    def __init__(self, store: JobStore, events: JobEvents, max_per_key: int) -> None:
        self.store = store
        self.events = events
        self.max_per_key = max_per_key
        self.open: dict[str, int] = {}

    def take(self, owner: str) -> Callable[[], None]:
        """Count one more wait for ``owner`` (429 past the cap); returns its release."""
        held = self.open.get(owner, 0)
        if self.max_per_key and held >= self.max_per_key:
            raise RateLimited(
                f"This key already has {held} waits open (long-polls, synchronous image "
                "requests and event streams); close one or poll without ?wait.",
                code="too_many_waiters",
                retry_after=1.0,
            )
        self.open[owner] = held + 1
        released = False

        def release() -> None:
            nonlocal released
            if released:
                return
            released = True
            left = self.open[owner] - 1
            if left:
                self.open[owner] = left
            else:
                del self.open[owner]

        return release

    @contextlib.contextmanager
    def hold(self, owner: str) -> Iterator[None]:
        release = self.take(owner)
        try:
            yield
        finally:
            release()

    async def until_terminal(self, receive: Receive, owner: str, job: Job, timeout: float) -> Job:
        """``wait_until_terminal`` for an HTTP client: counted against ``owner``'s cap, and
        over (with the job as last read) as soon as the client disconnects."""
        if job.status.terminal or timeout <= 0:
            return job
        with self.hold(owner):
            return await self.held(receive, job, timeout)

    async def held(self, receive: Receive, job: Job, timeout: float) -> Job:
        """``until_terminal`` for a caller that already holds its slot (``hold``): one that
        must be refused *before* it creates the job it would wait for."""
        if job.status.terminal or timeout <= 0:
            return job
        waiter = asyncio.ensure_future(wait_until_terminal(self.store, self.events, job, timeout))
        gone = asyncio.ensure_future(_disconnected(receive))
        try:
            await asyncio.wait((waiter, gone), return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in (waiter, gone):
                task.cancel()
            if gone.done() and not gone.cancelled():
                gone.exception()  # retrieved: a receive that failed means the client went
        if waiter.done() and not waiter.cancelled():
            return waiter.result()
        return job  # the client is gone: nobody reads this answer
