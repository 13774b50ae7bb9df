"""The connection pool under the gateway's long-lived outgoing clients.

httpcore's pool, at every request's start and end, walks every request it holds (queued or
running) and every connection, under an anyio lock and a cancellation shield, with a
``PoolRequest``, an event and trace hooks per request: with hundreds of provider calls in
flight that walk is quadratic, and the layers around it were most of a request's CPU.
``LeanPool`` serves the same interface httpx's transport calls (``handle_async_request``
with an ``httpcore.Request``, ``aclose``) with less:

- idle connections are kept per origin, the most recently used first (it is the most
  likely to still be open); one taken is checked for the server's close without a system
  call (gateway/lean_net.py's protocol keeps reading while a connection is idle);
- ``max_connections`` counts connections open or being opened; a request that finds none
  idle and no room closes another origin's idle connection, else waits its turn (first
  come, first served) up to the ``pool`` timeout (``httpcore.PoolTimeout``);
- at most ``max_keepalive_connections`` are kept idle (the oldest go), and none longer
  than ``keepalive_expiry`` seconds (swept at most every ``SWEEP_SECONDS``, and checked
  when taken);
- a request that fails on a kept-alive connection before any answer arrived (the server
  closed it as it was sent) is sent once more on a new connection if it is a ``GET`` or
  ``HEAD``; other methods raise, as with httpcore (the server may have acted on them). So
  a ``POST`` (a provider submit: paid, never sent twice) only takes a connection idle for
  at most ``FRESH_SECONDS``: servers close idle connections after a few seconds (uvicorn
  after 5), and one closing as the submit goes out would fail the job as "may have been
  accepted"; it gets a new connection, and older idle ones are kept for other requests.

Connections speak HTTP/1.1 through gateway/http1.py, over the pool's network backend
(``connect_tcp`` and ``start_tls``: the guarded fetcher's backend pins addresses there).
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
import time
from collections import deque
from types import TracebackType

import httpcore

from gateway.http1 import Http1Connection
from gateway.lean_net import AsyncioStream

__all__ = ["FRESH_SECONDS", "SWEEP_SECONDS", "LeanPool"]

#: the most seconds between two walks of every idle connection
SWEEP_SECONDS = 1.0
#: the longest a connection may have been idle to carry a request not safe to send twice
FRESH_SECONDS = 2.0
_RETRIED_METHODS = frozenset({b"GET", b"HEAD"})

Origin = tuple[bytes, bytes, int]


class LeanPool:
    """Keep-alive HTTP/1.1 connections per origin, at most ``max_connections`` at once."""

    def __init__(
        self,
        *,
        ssl_context: ssl.SSLContext,
        network_backend: httpcore.AsyncNetworkBackend,
        max_connections: int | None = 10,
        max_keepalive_connections: int | None = None,
        keepalive_expiry: float | None = None,
    ) -> None:
        self._ssl_context = ssl_context
        self._backend = network_backend
        self._max = max_connections if max_connections is not None else 1 << 30
        keep = max_keepalive_connections
        self._max_idle = min(self._max, keep if keep is not None else self._max)
        self._expiry = keepalive_expiry
        self._idle: dict[Origin, list[Http1Connection]] = {}
        self._idle_count = 0
        self._open = 0  # connections open or being opened
        self._waiters: deque[asyncio.Future[None]] = deque()
        self._sweep_at = 0.0
        self._closed = False

    @property
    def connections(self) -> int:
        """Connections open or being opened."""
        return self._open

    @property
    def idle_connections(self) -> int:
        return self._idle_count

    async def handle_async_request(self, request: httpcore.Request) -> httpcore.Response:
        if self._closed:
            raise RuntimeError("the connection pool is closed")
        url = request.url
        if url.scheme not in (b"http", b"https"):
            raise httpcore.UnsupportedProtocol(f"unsupported URL scheme {url.scheme!r}")
        if not url.host:
            raise httpcore.UnsupportedProtocol("the URL has no host")
        port = url.port or (443 if url.scheme == b"https" else 80)
        origin: Origin = (url.scheme, url.host, port)
        now = time.monotonic()
        if now >= self._sweep_at:
            self._sweep(now)
        fresh_only = request.method not in _RETRIED_METHODS
        connection = self._take_idle(origin, now, fresh_only) or await self._acquire(
            origin, request
        )
        try:
            return await connection.send(request)
        except (httpcore.RemoteProtocolError, httpcore.ReadError, httpcore.WriteError):
            if not connection.used or request.method not in _RETRIED_METHODS:
                raise
        # a kept-alive connection the server closed as the request went: once more, anew
        return await (await self._acquire(origin, request, fresh=True)).send(request)

    async def aclose(self) -> None:
        self._closed = True
        for connections in self._idle.values():
            for connection in connections:
                self._open -= 1
                connection.close()
        self._idle.clear()
        self._idle_count = 0
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_exception(RuntimeError("the connection pool is closed"))

    async def __aenter__(self) -> LeanPool:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None = None,
        exc_value: BaseException | None = None,
        traceback: TracebackType | None = None,
    ) -> None:
        await self.aclose()

    # -- taking and making connections ---------------------------------------------------

    def _take_idle(
        self, origin: Origin, now: float, fresh_only: bool = False
    ) -> Http1Connection | None:
        """The most recently used idle connection to ``origin`` still open (with
        ``fresh_only``, idle for at most ``FRESH_SECONDS``), or None."""
        idle = self._idle.get(origin)
        while idle:
            connection = idle.pop()
            self._idle_count -= 1
            if connection.is_stale() or self._expired(connection, now):
                self._drop(connection)
                continue
            if fresh_only and now - connection.idle_since > FRESH_SECONDS:
                idle.append(connection)  # kept for GETs; the others are older still
                self._idle_count += 1
                return None
            return connection
        return None

    async def _acquire(
        self, origin: Origin, request: httpcore.Request, *, fresh: bool = False
    ) -> Http1Connection:
        """A connection to ``origin``: a new one once there is room for it, or an idle one
        that came back while this request waited its turn."""
        timeouts: dict[str, float | None] = request.extensions.get("timeout", {})
        pool_timeout = timeouts.get("pool")
        loop = asyncio.get_running_loop()
        end = None if pool_timeout is None else loop.time() + pool_timeout
        woken = False
        while True:
            if self._open < self._max and (woken or not self._waiters):
                break
            if self._idle_count and (woken or not self._waiters):
                self._drop_oldest_idle()  # another origin's idle connection makes room
                continue
            await self._wait(end)
            woken = True
            if not fresh:
                unsafe = request.method not in _RETRIED_METHODS
                connection = self._take_idle(origin, time.monotonic(), unsafe)
                if connection is not None:
                    return connection
        self._open += 1
        try:
            stream = await self._open_stream(origin, request)
        except BaseException:
            self._open -= 1
            self._wake()
            raise
        return Http1Connection(origin, stream, self._release)

    async def _wait(self, end: float | None) -> None:
        """Until woken (first come, first woken); ``httpcore.PoolTimeout`` past ``end``."""
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        try:
            async with asyncio.timeout_at(end):
                await waiter
        except BaseException as exc:
            if waiter.done() and not waiter.cancelled():
                self._wake()  # woken, but leaving: the turn goes to the next one
            else:
                waiter.cancel()
                with contextlib.suppress(ValueError):
                    self._waiters.remove(waiter)
            if isinstance(exc, TimeoutError):
                raise httpcore.PoolTimeout("no connection came free in time") from None
            raise

    async def _open_stream(self, origin: Origin, request: httpcore.Request) -> AsyncioStream:
        scheme, host, port = origin
        timeouts: dict[str, float | None] = request.extensions.get("timeout", {})
        timeout = timeouts.get("connect")
        name = host.decode("ascii")
        stream = await self._backend.connect_tcp(name, port, timeout=timeout)
        if scheme == b"https":
            sni = request.extensions.get("sni_hostname") or name
            try:
                stream = await stream.start_tls(
                    self._ssl_context, server_hostname=sni, timeout=timeout
                )
            except BaseException:
                await stream.aclose()
                raise
        if not isinstance(stream, AsyncioStream):
            await stream.aclose()
            raise TypeError("a LeanPool's backend must make gateway.lean_net streams")
        return stream

    # -- giving connections back ---------------------------------------------------------

    def _release(self, connection: Http1Connection, reusable: bool) -> None:
        """A request on ``connection`` ended: keep it idle, or count it closed."""
        if not reusable or self._closed:
            connection.close()
            self._open -= 1
            self._wake()
            return
        self._idle.setdefault(connection.origin, []).append(connection)
        self._idle_count += 1
        if self._waiters:
            self._wake()  # it may be the waiter's origin; if not, it makes room
        elif self._idle_count > self._max_idle:
            self._drop_oldest_idle()

    def _wake(self) -> None:
        """Wake the first request waiting for room."""
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)
                return

    def _expired(self, connection: Http1Connection, now: float) -> bool:
        return self._expiry is not None and now - connection.idle_since > self._expiry

    def _drop(self, connection: Http1Connection) -> None:
        """Close an idle connection already taken out of the idle lists."""
        self._open -= 1
        connection.close()
        self._wake()

    def _drop_oldest_idle(self) -> None:
        oldest: list[Http1Connection] | None = None
        for connections in self._idle.values():
            if connections and (oldest is None or connections[0].idle_since < oldest[0].idle_since):
                oldest = connections
        if oldest:
            self._idle_count -= 1
            self._drop(oldest.pop(0))

    def _sweep(self, now: float) -> None:
        """Close every idle connection expired or closed by its server."""
        self._sweep_at = now + SWEEP_SECONDS
        for origin, connections in list(self._idle.items()):
            kept = []
            for connection in connections:
                if connection.is_stale() or self._expired(connection, now):
                    self._idle_count -= 1
                    self._drop(connection)
                else:
                    kept.append(connection)
            if kept:
                self._idle[origin] = kept
            else:
                del self._idle[origin]
