"""A connection's deadlines behind one loop timer: its request head's (``gateway/edge.py``'s
header deadline) and its idle keep-alive wait's (uvicorn's ``timeout_keep_alive``).

Both used to cost a loop timer per request: armed when a head began (or a response ended),
cancelled when the head was complete (or the next request came), about 1.5 µs each on uvloop,
against 0.1 µs for reading the loop's clock. Here starting a deadline sets a number, ending
it clears the number, and the one timer is armed only when none is pending or the pending one
is later than the new deadline. When it fires it acts on a deadline that has passed, else
re-arms for the earliest one still set: on a busy keep-alive connection, once per timeout
rather than once per request.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable


class ConnectionClock:
    """``head`` and ``idle``: the loop times by which the head being read must be complete
    and by which an idle connection is closed, None when not running. A deadline that
    passes is cleared and its callback called."""

    __slots__ = ("head", "idle", "loop", "on_head", "on_idle", "timer")

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        on_head: Callable[[], None],
        on_idle: Callable[[], None],
    ) -> None:
        self.loop = loop
        self.on_head = on_head
        self.on_idle = on_idle
        self.head: float | None = None
        self.idle: float | None = None
        self.timer: asyncio.TimerHandle | None = None

    def start_head(self, timeout: float) -> None:
        self.head = self.loop.time() + timeout
        self._arm(self.head)

    def start_idle(self, timeout: float) -> None:
        self.idle = self.loop.time() + timeout
        self._arm(self.idle)

    def stop(self) -> None:
        """No deadline any more (the connection is closing)."""
        self.head = self.idle = None
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None

    def _arm(self, when: float) -> None:
        timer = self.timer
        if timer is not None:
            if timer.when() <= when:
                return  # it fires first, and then looks again
            timer.cancel()
        self.timer = self.loop.call_at(when, self._fire)

    def _fire(self) -> None:
        self.timer = None
        now = self.loop.time()
        if self.head is not None and now >= self.head:
            self.head = None
            self.on_head()
        if self.idle is not None and now >= self.idle:
            self.idle = None
            self.on_idle()
        pending = [d for d in (self.head, self.idle) if d is not None]
        if pending and self.timer is None:
            self._arm(min(pending))
