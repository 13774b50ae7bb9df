"""Fair shares of the event loop: at most ``per_caller`` requests of one caller run at once.

One process serves every key on one event loop, so a request waits behind every request
already running. A key that floods (even one held to its rate limit: a 429 costs a request's
worth of HTTP too) would otherwise keep as many requests running as it has connections, and
every other key's poll would queue behind all of them. Here a caller's requests past its share
wait, costing nothing but a future, until one of its own finishes; another caller's request
starts at once. Requests are not refused, only ordered: a client polling twenty jobs at once
gets all its answers, a few at a time.

A caller is its ``Authorization`` header (a key or token, compared as bytes: no hashing on this
path). Requests without one (health checks, signed file downloads, the web pages' assets) are
not shared out: behind a reverse proxy they would all come from one address, and limiting
anonymous traffic per client is the proxy's job. Long waits do not hold a share: long-polls
(``wait=`` in the query), event streams (``/events``) and the synchronous image endpoint,
which wait for a job rather than use the CPU, are limited by the per-key cap on open waits.

Served by ``backserv serve``, the HTTP protocol applies the same share first
(``gateway/edge_share.py``), before a request costs a task, so nothing waits here; this
middleware keeps the rule under any other ASGI server.
"""

from __future__ import annotations

import asyncio
from collections import deque

from starlette.types import ASGIApp, Receive, Scope, Send

_AUTHORIZATION = b"authorization"
_LONG_PATHS = ("/v1/images/generations",)


def is_long(scope: Scope) -> bool:
    """A request that waits for a job rather than uses the CPU: not shared out."""
    path: str = scope["path"]
    return path.endswith("/events") or path in _LONG_PATHS or b"wait=" in scope["query_string"]


class FairShare:
    def __init__(self, app: ASGIApp, per_caller: int) -> None:
        self.app = app
        self.per_caller = per_caller
        self.running: dict[bytes, int] = {}
        self.waiting: dict[bytes, deque[asyncio.Future[None]]] = {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not self.per_caller or is_long(scope):
            await self.app(scope, receive, send)
            return
        caller = next((v for k, v in scope["headers"] if k == _AUTHORIZATION), None)
        if caller is None:
            await self.app(scope, receive, send)
            return
        await self._enter(caller)
        try:
            await self.app(scope, receive, send)
        finally:
            self._leave(caller)

    async def _enter(self, caller: bytes) -> None:
        running = self.running.get(caller, 0)
        if running < self.per_caller:
            self.running[caller] = running + 1
            return
        turn: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        queue = self.waiting.setdefault(caller, deque())
        queue.append(turn)
        try:
            await turn  # the share is handed over by _leave, already counted
        except asyncio.CancelledError:
            if turn.done() and not turn.cancelled():
                self._leave(caller)  # handed over just as we were cancelled: pass it on
            else:
                queue.remove(turn)
                if not queue:
                    self.waiting.pop(caller, None)
            raise

    def _leave(self, caller: bytes) -> None:
        queue = self.waiting.get(caller)
        while queue:
            turn = queue.popleft()
            if not queue:
                del self.waiting[caller]
            if not turn.done():
                turn.set_result(None)  # the share passes on; running stays the same
                return
        left = self.running[caller] - 1
        if left:
            self.running[caller] = left
        else:
            del self.running[caller]
