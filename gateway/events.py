"""In-process fan-out of "this job changed" signals, for long-polls, SSE streams and webhooks.

The store calls ``publish(job_id)`` after every committed change of a job (on PostgreSQL,
changes made by other replicas arrive through LISTEN/NOTIFY and are published the same way).
A waiter registers interest in one job and sleeps on an ``asyncio.Event``: thousands of
waiters cost a dict entry each and no database polling; each change costs one read per
waiter of that job.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from contextlib import contextmanager


class JobWatch:
    """One waiter's view of one job: ``await watch.changed(timeout)``."""

    __slots__ = ("_event",)

    def __init__(self) -> None:
        self._event = asyncio.Event()

    def _signal(self) -> None:
        self._event.set()

    async def changed(self, timeout: float) -> bool:
        """True once the job changed since the last call; False after ``timeout`` seconds."""
        if not self._event.is_set():
            try:
                async with asyncio.timeout(max(0.0, timeout)):
                    await self._event.wait()
            except TimeoutError:
                return False
        self._event.clear()
        return True


class JobEvents:
    def __init__(self) -> None:
        self._watches: dict[str, set[JobWatch]] = {}
        self._listeners: list[Callable[[str], None]] = []

    def publish(self, job_id: str) -> None:
        for watch in self._watches.get(job_id, ()):
            watch._signal()
        for listener in self._listeners:
            listener(job_id)

    def add_listener(self, listener: Callable[[str], None]) -> None:
        """Be called with the id of every job that changes (the webhook dispatcher)."""
        self._listeners.append(listener)

    @contextmanager
    def watch(self, job_id: str) -> Iterator[JobWatch]:
        watch = JobWatch()
        self._watches.setdefault(job_id, set()).add(watch)
        try:
            yield watch
        finally:
            watchers = self._watches.get(job_id)
            if watchers is not None:
                watchers.discard(watch)
                if not watchers:
                    del self._watches[job_id]

    @property
    def watching(self) -> int:
        return sum(len(w) for w in self._watches.values())
