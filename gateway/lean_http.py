"""A leaner transport under httpx for the gateway's long-lived outgoing clients.

Its connections are made and read by gateway/lean_net.py (asyncio's own transports, not
anyio's; whether an idle connection was closed by the server is known without a system
call).

``LeanPool`` is httpcore's pool without that walk. httpcore 1.0's, at every start and end,
counts *all* its connections again for each idle one (quadratic: with 64 keep-alive
connections, 4,096 checks a request) and asks every idle one whether the server closed it:
about 3.8 ms of CPU a request at 64 connections, most of a hosted job's cost. ``LeanPool``
does nothing at a request's end, and at its start looks for the first idle connection to
its origin and checks that one only. Every ``SWEEP_SECONDS`` at most it walks them all:
closed, expired and server-closed connections go, and idle ones past the keep-alive limit
(httpcore counts all connections against that limit, not the idle ones). An idle HTTP/1.1
connection is given to one queued request per walk, not to several that then race for it.

``LeanClient`` is httpx's client keeping no cookies: httpx reads every answer's cookies
into its jar through ``http.cookiejar`` (about 5% of a request's CPU), and would send what a
CDN set with the next download from it, another job's. The gateway's provider calls and
downloads use none.

``lean_transport()`` is httpx's own transport (its API, its error mapping, respx-mockable)
with its connection pool replaced by a ``LeanPool`` on that backend: httpx has no argument
for a network backend or a pool, so the pool it made, still unused, is replaced.
"""

from __future__ import annotations

import ssl
import time
from typing import Any

import httpcore
import httpx

from gateway.lean_net import AsyncioBackend

__all__ = ["LeanClient", "LeanPool", "lean_transport"]

#: the most seconds between two checks of every idle connection for the server's close
SWEEP_SECONDS = 1.0


class LeanPool(httpcore.AsyncConnectionPool):
    """httpcore's connection pool, its bookkeeping linear in its connections (see above)."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._sweep_at = 0.0

    def _assign_requests_to_connections(self) -> list[httpcore.AsyncConnectionInterface]:
        """Give each queued request a connection (an idle one to its origin, else a new
        one); every ``SWEEP_SECONDS``, first let closed, expired and surplus idle
        connections go. The connections to close are returned (httpcore closes them)."""
        closing: list[httpcore.AsyncConnectionInterface] = []
        now = time.monotonic()
        if now >= self._sweep_at:
            self._sweep_at = now + SWEEP_SECONDS
            self._tidy(closing, check=True)
        taken: set[httpcore.AsyncConnectionInterface] = set()
        for pool_request in self._requests:
            if not pool_request.is_queued():
                continue
            origin = pool_request.request.url.origin
            connection = self._idle_for(origin, taken, closing)
            if connection is None:
                self._tidy(closing, check=False)  # closed ones go: the count is true
                if len(self._connections) >= self._max_connections:
                    spare = [c for c in self._connections if c.is_idle() and c not in taken]
                    if not spare:
                        continue  # it waits for a connection to come free
                    self._connections.remove(spare[0])  # another origin's: it makes room
                    closing.append(spare[0])
                connection = self.create_connection(origin)
                self._connections.append(connection)
            taken.add(connection)  # an idle HTTP/1.1 connection takes one request
            pool_request.assign_to_connection(connection)
        return closing

    async def _close_connections(self, closing: list[httpcore.AsyncConnectionInterface]) -> None:
        """httpcore's, without entering a cancellation shield (an anyio cancel scope) twice a
        request for nothing: most walks close no connection."""
        if closing:
            await super()._close_connections(closing)

    def _idle_for(
        self,
        origin: httpcore.Origin,
        taken: set[httpcore.AsyncConnectionInterface],
        closing: list[httpcore.AsyncConnectionInterface],
    ) -> httpcore.AsyncConnectionInterface | None:
        """The first idle connection to ``origin`` not ``taken``, the server's close checked
        now (one that expired or was closed is let go, and the next one tried)."""
        found = None
        expired = []
        for connection in self._connections:
            if connection in taken or not connection.is_available():
                continue
            if not connection.can_handle_request(origin):
                continue
            if connection.has_expired():
                expired.append(connection)
                continue
            found = connection
            break
        for connection in expired:
            self._connections.remove(connection)
            closing.append(connection)
        return found

    def _tidy(self, closing: list[httpcore.AsyncConnectionInterface], *, check: bool) -> None:
        """Drop closed connections; with ``check``, close idle ones that expired (or that
        the server closed) and the oldest idle ones past the keep-alive limit."""
        kept: list[httpcore.AsyncConnectionInterface] = []
        idle: list[httpcore.AsyncConnectionInterface] = []
        for connection in self._connections:
            if connection.is_closed():
                continue
            if check and connection.is_idle():
                if connection.has_expired():
                    closing.append(connection)
                    continue
                idle.append(connection)
            kept.append(connection)
        surplus = len(idle) - self._max_keepalive_connections
        for connection in idle[: max(0, surplus)]:
            kept.remove(connection)
            closing.append(connection)
        self._connections = kept


class _NoCookies(httpx.Cookies):
    """A jar that keeps nothing an answer sets (and so sends nothing)."""

    def extract_cookies(self, response: httpx.Response) -> None:
        return None


class LeanClient(httpx.AsyncClient):
    """httpx's client, its cookies never kept (see above)."""

    def __init__(self, **kwargs: Any) -> None:
        if kwargs.get("cookies"):
            raise ValueError("a LeanClient sends no cookies")
        super().__init__(**kwargs)
        self._no_cookies = _NoCookies()

    @property
    def cookies(self) -> httpx.Cookies:
        return self._no_cookies

    @cookies.setter
    def cookies(self, cookies: Any) -> None:
        raise ValueError("a LeanClient sends no cookies")


def lean_transport(
    *,
    limits: httpx.Limits,
    verify: ssl.SSLContext | bool = True,
    backend: httpcore.AsyncNetworkBackend | None = None,
) -> httpx.AsyncHTTPTransport:
    """httpx's transport over a ``LeanPool`` on ``backend`` (an ``AsyncioBackend`` by
    default); never through a proxy from the environment (``trust_env`` off)."""
    context = verify if isinstance(verify, ssl.SSLContext) else httpx.create_ssl_context(verify)
    transport = httpx.AsyncHTTPTransport(verify=context, trust_env=False, limits=limits)
    transport._pool = LeanPool(
        ssl_context=context,
        max_connections=limits.max_connections,
        max_keepalive_connections=limits.max_keepalive_connections,
        keepalive_expiry=limits.keepalive_expiry,
        network_backend=backend or AsyncioBackend(),
    )
    return transport
