"""A per-process cache of rendered jobs: the poll path answers from memory.

``GET /v1/jobs/{id}`` is what clients do most (the seed's own script polls every 2 s), and
reading a row, building a ``Job`` and rendering it is most of its cost. The cache keeps the
rendered body (the JSON bytes) of recently read jobs, keyed by id, beside the owner it
belongs to, so an answer from it passes the same owner check as a read.

Correctness: the store publishes every committed change of a job (status, progress,
attempts, priority, input, meta, files, deletion: ``JobStore.watch_changes``) and each one
drops that job's entry. A read that raced a change cannot put the older body back: a read
``reserve``s the id first, a change drops the reservation, and ``put`` stores only under a
reservation still held. On PostgreSQL, changes made by another replica arrive through the
LISTEN relay (milliseconds); an entry also expires after ``ttl`` seconds, which bounds how
stale an answer can be if a notification is lost (the listener reconnecting) or another
process writes the SQLite file (the CLI).
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class View:
    owner: str
    body: bytes
    expires: float


class JobViews:
    def __init__(
        self,
        ttl: float,
        size: int = 10_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.ttl = ttl
        self.size = size
        self.clock = clock
        self._views: OrderedDict[str, View] = OrderedDict()
        self._reserved: dict[str, object] = {}

    @property
    def enabled(self) -> bool:
        return self.ttl > 0 and self.size > 0

    def __len__(self) -> int:
        return len(self._views)

    def get(self, job_id: str) -> View | None:
        view = self._views.get(job_id)
        if view is None:
            return None
        if view.expires <= self.clock():
            del self._views[job_id]
            return None
        return view

    def reserve(self, job_id: str) -> object:
        """Call before reading the job; hand the token to ``put``.

        Reads of one job in flight together share a reservation, and the first to finish is
        kept: each began after the last change the cache heard of. (When each read took a
        reservation of its own, every read finishing while a later one was in flight was
        turned away: on PostgreSQL, where a read is a round trip, a steady stream of polls
        kept an expired job out of the cache, each of them a read, for seconds at a time.)"""
        if not self.enabled:
            return object()
        token = self._reserved.get(job_id)
        if token is None:
            token = self._reserved[job_id] = object()
        return token

    def put(self, job_id: str, token: object, owner: str, body: bytes) -> bool:
        """Keep ``body`` unless the job changed since ``reserve`` (or a read sharing the
        reservation was kept first); True when kept."""
        if self._reserved.get(job_id) is not token:
            return False
        del self._reserved[job_id]
        self._views[job_id] = View(owner, body, self.clock() + self.ttl)
        self._views.move_to_end(job_id)
        while len(self._views) > self.size:
            self._views.popitem(last=False)
        return True

    def release(self, job_id: str, token: object) -> None:
        """Give up a reservation without a body (the job is not to be cached)."""
        if self._reserved.get(job_id) is token:
            del self._reserved[job_id]

    def changed(self, job_id: str) -> None:
        """The store's change listener: the job's entry and any read in flight are stale."""
        self._views.pop(job_id, None)
        self._reserved.pop(job_id, None)
