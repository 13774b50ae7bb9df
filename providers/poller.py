"""One timer per provider for the status reads of requests that nothing calls back about.

Without webhooks every running request is polled. A sleep per request is a timer per job
(10,000 jobs in flight: 10,000 timers, each waking its own task to make one call). Here the
runner of each request awaits a future instead; the ``Poller`` keeps the requests due in a
heap, their due times rounded up to a ``tick`` (a quarter of the poll interval), so a single
timer (one ``loop.call_at`` handle) fires once per tick for every request due by then. The
reads due are made by at most ``workers`` tasks (the provider's call gate lets no more
through anyway), started when a tick has work and gone when it is done; each read's state,
or its error, goes to its waiter's future. A waiter that went away (its job was cancelled)
is skipped.

Each request is read on a growing delay: ``interval / 4`` first, then 1.5 times longer each
time, at most ``4 * interval`` (1 s: 0.25, 0.38, 0.56, 0.84, 1.27, 1.90, 2.85, 4, 4, ...);
the schedules of the most recent ``keep`` requests are kept, and a request that ended
starts over. A caller's ``timeout`` shorter than the next delay wins (it is not rounded up).

The poller belongs to the event loop it first ran on; used from another (a test's next
loop), it starts afresh.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import logging
import math
from collections import OrderedDict, deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from gateway.errors import ProviderTransientError
from providers.base import ProviderRef, ProviderState, RouteSpec

log = logging.getLogger("backserv.poller")

KEEP = 10_000
EARLY = 0.001

Read = Callable[[RouteSpec, ProviderRef], Awaitable[ProviderState]]


@dataclass(eq=False)
class _Due:
    route: RouteSpec
    ref: ProviderRef
    future: asyncio.Future[ProviderState]


class Poller:
    def __init__(
        self, read: Read, *, interval: float, workers: int, name: str, keep: int = KEEP
    ) -> None:
        if not interval > 0 or workers < 1:
            raise ValueError("a poller needs an interval over 0 and at least one worker")
        self._read = read
        self.interval = interval
        self.tick = interval / 4
        self.workers = workers
        self.name = name
        self.keep = keep
        #: how many times the timer fired (each tick with requests due counts once)
        self.fires = 0
        #: the most reads in flight at once so far
        self.peak = 0
        self._delays: OrderedDict[str, float] = OrderedDict()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._reset()

    def _reset(self) -> None:
        self._heap: list[tuple[float, int, _Due]] = []
        self._seq = itertools.count()
        self._ready: deque[_Due] = deque()
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at = math.inf
        self._tasks: set[asyncio.Task[None]] = set()
        self._reading = 0

    def next_delay(self, request_id: str) -> float:
        """The delay before ``request_id``'s next read (and the schedule moved on)."""
        previous = self._delays.pop(request_id, None)
        first, cap = self.interval / 4, self.interval * 4
        delay = first if previous is None else min(previous * 1.5, cap)
        self._delays[request_id] = delay
        while len(self._delays) > self.keep:
            self._delays.popitem(last=False)
        return delay

    def forget(self, request_id: str) -> None:
        """``request_id`` ended: its next schedule starts over."""
        self._delays.pop(request_id, None)

    def __len__(self) -> int:
        """Reads waiting for their tick or for a worker."""
        return len(self._heap) + len(self._ready)

    async def wait(self, route: RouteSpec, ref: ProviderRef, timeout: float) -> ProviderState:
        """Read ``ref``'s state on its schedule (or within ``timeout``) and return it."""
        loop = self._bind()
        now = loop.time()
        latest = now + max(0.0, timeout)
        at = now + max(0.0, min(timeout, self.next_delay(ref.request_id)))
        at = min(math.ceil(at / self.tick) * self.tick, latest)  # the tick, unless too late
        due = _Due(route, ref, loop.create_future())
        heapq.heappush(self._heap, (at, next(self._seq), due))
        if at < self._timer_at:
            self._arm(loop, at)
        state = await due.future
        if state.terminal:
            self.forget(ref.request_id)
        return state

    async def aclose(self) -> None:
        """Stop the timer and the workers; waiters still there get a transient error."""
        if self._timer is not None:
            self._timer.cancel()
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        if tasks and self._loop is asyncio.get_running_loop():
            await asyncio.gather(*tasks, return_exceptions=True)
        for due in [*self._ready, *(entry[2] for entry in self._heap)]:
            _fail(due, ProviderTransientError(f"{self.name}: the provider was closed"))
        self._delays.clear()
        self._reset()

    # -- the timer and the workers ---------------------------------------------------------

    def _bind(self) -> asyncio.AbstractEventLoop:
        loop = asyncio.get_running_loop()
        if loop is not self._loop:
            self._loop = loop
            self._reset()
        return loop

    def _arm(self, loop: asyncio.AbstractEventLoop, at: float) -> None:
        if self._timer is not None:
            self._timer.cancel()
        self._timer_at = at
        self._timer = loop.call_at(at, self._fire)

    def _fire(self) -> None:
        """The tick: move every request due to the ready line, start workers for it."""
        loop = self._loop
        if loop is None:
            return
        self._timer, self._timer_at = None, math.inf
        self.fires += 1
        now = loop.time() + EARLY  # the loop may run a timer that early
        heap = self._heap
        while heap and heap[0][0] <= now:
            due = heapq.heappop(heap)[2]
            if not due.future.done():  # a waiter that went away is skipped
                self._ready.append(due)
        if heap:
            self._arm(loop, heap[0][0])
        self._staff(loop)

    def _staff(self, loop: asyncio.AbstractEventLoop) -> None:
        while self._ready and len(self._tasks) < self.workers:
            task = loop.create_task(self._work(), name=f"poller-{self.name}")
            self._tasks.add(task)
            task.add_done_callback(self._worker_done)

    def _worker_done(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and (exc := task.exception()) is not None:
            log.error("%s poller: a worker failed; starting another", self.name, exc_info=exc)
        if self._ready and self._loop is not None and not self._loop.is_closed():
            self._staff(self._loop)

    async def _work(self) -> None:
        while self._ready:
            due = self._ready.popleft()
            if due.future.done():
                continue
            self._reading += 1
            self.peak = max(self.peak, self._reading)
            try:
                state = await self._read(due.route, due.ref)
            except asyncio.CancelledError:
                _fail(due, ProviderTransientError(f"{self.name}: the provider was closed"))
                raise
            except Exception as exc:  # the waiter's to handle, as a read of its own would be
                _fail(due, exc)
            else:
                if not due.future.done():
                    due.future.set_result(state)
            finally:
                self._reading -= 1


def _fail(due: _Due, exc: BaseException) -> None:
    if not due.future.done():
        due.future.set_exception(exc)
