"""Fair shares at the HTTP edge: a key's requests past its share are held before they cost
anything but their parsing.

The rule is the application's (``gateway/api/fair_share.py``): at most ``per_key`` requests
of one caller (its ``Authorization`` header) run at once; requests without one and long waits
are not counted. Applied in the HTTP protocol (``gateway/edge.py``), a request past its
caller's share gets no ASGI task and runs no middleware: it is parked with its connection,
whose reading stops (the client's next bytes stay in the kernel, unparsed), until one of the
caller's running requests ends; then the caller's oldest held request starts, one turn of
the event loop later, so that requests of other keys that arrived meanwhile are read and
queued ahead of it.

Why here and not only in the middleware: one process serves every key on one event loop, and
a request that arrives waits behind every callback already queued on it. A request parked in
the middleware has cost a task, the ASGI layers above the gate, and a wake-up later; under a
flood those fill the loop's queue, and another key's poll waits behind them (bench target 7).
A request held here queues nothing.

Callers are told apart by a digest of their header (the raw key or token is not kept).
``KeyShares`` only counts and orders; the protocol starts, holds and drops requests through
the small ``Turn`` seam.
"""

from __future__ import annotations

import hashlib
from abc import ABC, abstractmethod
from collections import deque
from typing import Any

from gateway.api.fair_share import is_long

_AUTHORIZATION = b"authorization"


class Turn(ABC):
    """A held request, as ``KeyShares`` sees it."""

    @abstractmethod
    def gone(self) -> bool:
        """Whether its client is gone (nothing would read the answer)."""

    @abstractmethod
    def start(self) -> None:
        """Start the request: its share was handed over and is already counted."""


def caller_of(scope: Any) -> bytes | None:
    """The digest of the request's ``Authorization`` header; None for a request that is not
    shared out (no header, or a long wait)."""
    for name, value in scope["headers"]:
        if name == _AUTHORIZATION:
            return None if is_long(scope) else hashlib.blake2b(value, digest_size=16).digest()
    return None


class KeyShares:
    """Each caller's running requests (at most ``per_key``) and its held ones, oldest first."""

    def __init__(self, per_key: int) -> None:
        self.per_key = per_key
        self.running: dict[bytes, int] = {}
        self.held: dict[bytes, deque[Turn]] = {}

    def enter(self, caller: bytes) -> bool:
        """Take one of ``caller``'s shares: False when all are taken (then ``hold``)."""
        running = self.running.get(caller, 0)
        if running >= self.per_key:
            return False
        self.running[caller] = running + 1
        return True

    def hold(self, caller: bytes, turn: Turn) -> None:
        self.held.setdefault(caller, deque()).append(turn)

    def force(self, caller: bytes) -> None:
        """Count one more running request whatever the share (a held request started early,
        when the server shuts down)."""
        self.running[caller] = self.running.get(caller, 0) + 1

    def drop(self, caller: bytes, turn: Turn) -> None:
        """Forget a held request (its connection was lost, or it was started early)."""
        queue = self.held.get(caller)
        if queue is None:
            return
        try:
            queue.remove(turn)
        except ValueError:
            return
        if not queue:
            del self.held[caller]

    def leave(self, caller: bytes) -> None:
        """One of ``caller``'s requests ended: its share passes to the caller's oldest held
        request whose client is still there, else it is freed."""
        queue = self.held.get(caller)
        while queue:
            turn = queue.popleft()
            if not queue:
                del self.held[caller]
            if not turn.gone():
                turn.start()  # the share passes on: running stays the same
                return
        left = self.running.get(caller, 0) - 1
        if left > 0:
            self.running[caller] = left
        else:
            self.running.pop(caller, None)
