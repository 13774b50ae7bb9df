"""A semaphore counted in bytes, for the heavy renders an in-process provider runs in threads.

Each render says how much memory it may hold at its peak (an estimate made before it
starts, from the sizes of its images); ``MemoryBudget.run`` starts it in a thread once that
much of the budget is free. Waiters are served in order, so a large render is not starved
by a stream of small ones; a render estimated above the whole budget waits for all of it
and runs alone. A thread cannot be stopped, so its reservation is held until it ends, even
when the task that awaited it was cancelled.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable
from typing import TypeVar

__all__ = ["MemoryBudget"]

T = TypeVar("T")


class MemoryBudget:
    def __init__(self, limit: int) -> None:
        if limit < 1:
            raise ValueError("a memory budget must be at least 1 byte")
        self.limit = limit
        self.in_use = 0
        #: the most bytes reserved at once so far (for tests and diagnostics)
        self.peak = 0
        self._waiters: deque[tuple[int, asyncio.Future[None]]] = deque()

    async def run(self, cost: int, work: Callable[[], T]) -> T:
        """``work()`` in a thread, with ``cost`` bytes of the budget reserved until it ends."""
        cost = max(0, min(cost, self.limit))
        await self._acquire(cost)
        try:
            task = asyncio.ensure_future(asyncio.to_thread(work))
        except BaseException:
            self._release(cost)
            raise
        task.add_done_callback(lambda done: self._finished(done, cost))
        return await asyncio.shield(task)

    async def _acquire(self, cost: int) -> None:
        if not self._waiters and self.in_use + cost <= self.limit:
            self._take(cost)
            return
        granted: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        entry = (cost, granted)
        self._waiters.append(entry)
        try:
            await granted
        except asyncio.CancelledError:
            if granted.done() and not granted.cancelled():
                self._release(cost)  # granted just as the waiter was cancelled
            else:
                if entry in self._waiters:  # _wake may have dropped it already
                    self._waiters.remove(entry)
                self._wake()  # the waiters behind it may fit now
            raise

    def _take(self, cost: int) -> None:
        self.in_use += cost
        self.peak = max(self.peak, self.in_use)

    def _finished(self, task: asyncio.Future[T], cost: int) -> None:
        if not task.cancelled():
            task.exception()  # retrieved: whoever awaited it (if still there) handles it
        self._release(cost)

    def _release(self, cost: int) -> None:
        self.in_use -= cost
        self._wake()

    def _wake(self) -> None:
        while self._waiters:
            cost, granted = self._waiters[0]
            if granted.done():  # cancelled meanwhile
                self._waiters.popleft()
                continue
            if self.in_use + cost > self.limit:
                return
            self._waiters.popleft()
            self._take(cost)
            granted.set_result(None)
