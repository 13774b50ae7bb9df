"""How long an in-process provider keeps its finished requests, and their output bytes.

The sandbox and the local provider keep each request in memory, outputs included, so a
poll can read how it ended. Kept for ``keep_finished`` seconds alone, a busy gateway held
gigabytes (4.7 jobs/s of 2048² images for 300 s: 2.8 GB). So a finished request is
forgotten at the first of:

- ``keep_finished`` seconds after it ended;
- ``keep_delivered`` seconds after a poll read its success: the runner stores the outputs
  as soon as it has them (and retries that write with the outputs in hand);
- when the outputs of the finished requests kept add up to more than ``max_bytes``: the
  oldest are forgotten first (the newest is kept, however large, for its poller).

A poll of a forgotten request raises ``ProviderLostRequest``, and the gateway runs the job
again: free for these providers (``free_resubmit``).
"""

from __future__ import annotations

import asyncio
from collections import OrderedDict
from typing import Generic, Protocol, TypeVar

from providers.base import ProviderState, StateKind

__all__ = ["Retention"]


class Finished(Protocol):
    id: str
    state: ProviderState
    evict: asyncio.TimerHandle | None


R = TypeVar("R", bound=Finished)


class Retention(Generic[R]):
    """Forgets the finished requests of ``table`` within the bounds above."""

    def __init__(
        self,
        table: dict[str, R],
        *,
        keep_finished: float,
        keep_delivered: float,
        max_bytes: int,
    ) -> None:
        self._table = table
        self.keep_finished = keep_finished
        self.keep_delivered = min(keep_delivered, keep_finished)
        self.max_bytes = max_bytes
        self._held: OrderedDict[str, tuple[R, int]] = OrderedDict()  # oldest first
        self._delivered: set[str] = set()
        self._bytes = 0

    @property
    def retained_bytes(self) -> int:
        """The output bytes of the finished requests still kept."""
        return self._bytes

    def finished(self, request: R) -> None:
        """``request`` reached a terminal state: start its clock, and count its outputs."""
        if self._table.get(request.id) is not request:
            return
        # a poll may have read the success already (it wakes before the task's end is seen)
        read = request.id in self._delivered
        self._schedule(request, self.keep_delivered if read else self.keep_finished)
        size = sum(len(o.data) for o in request.state.outputs if o.data is not None)
        if size:
            self._held[request.id] = (request, size)
            self._bytes += size
        while self._bytes > self.max_bytes and len(self._held) > 1:
            oldest, _ = next(iter(self._held.values()))
            self.forget(oldest)

    def delivered(self, request: R, state: ProviderState) -> None:
        """A poll read ``state`` of ``request``: once it is a success, keep it only briefly."""
        if state.kind is not StateKind.SUCCEEDED or request.id in self._delivered:
            return
        if self._table.get(request.id) is request:
            self._delivered.add(request.id)
            self._schedule(request, self.keep_delivered)

    def forget(self, request: R) -> None:
        if request.evict is not None:
            request.evict.cancel()
            request.evict = None
        if self._table.get(request.id) is request:
            del self._table[request.id]
        held = self._held.pop(request.id, None)
        if held is not None:
            self._bytes -= held[1]
        self._delivered.discard(request.id)

    def close(self) -> None:
        """Stop every clock (the provider is closing)."""
        for request in self._table.values():
            if request.evict is not None:
                request.evict.cancel()

    def _schedule(self, request: R, delay: float) -> None:
        if request.evict is not None:
            request.evict.cancel()
        loop = asyncio.get_running_loop()
        request.evict = loop.call_later(delay, self.forget, request)
