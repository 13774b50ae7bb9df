"""The HTTP edge: limits that hold before a request reaches the application.

uvicorn's HTTP protocol (httptools) bounds nothing while it reads a request: a client that
sends half a header line and stops keeps its connection (and a file descriptor) forever, and
a header line that never ends is buffered whole. ``GuardedHttpToolsProtocol`` adds, per
connection:

- a **header deadline**: a connection must deliver a complete request head within
  ``header_timeout`` seconds of opening (or of its previous request's end), else it gets a
  408 and is closed — idle keep-alive connections are still closed by uvicorn's own
  keep-alive timeout;
- a **header size cap**: a request head (request line + headers) over ``max_header_bytes``
  gets a 431 and the connection is closed, before the parser buffers more;
- a **connection cap**: past ``max_connections`` open connections, a request is still read
  (so the client gets an answer, not a reset) and answered 503 with ``Retry-After`` and
  ``Connection: close``, under a shorter header deadline; past the cap plus
  ``overflow`` (only an attack gets there) a new connection is closed at once, keeping the
  process's file descriptors for the jobs it has accepted;
- a **share per key**: past ``running_per_key`` running requests of one key, a request is
  held, parsed but given no task, its connection not read, until one of the key's requests
  ends (``gateway/edge_share.py``, which says why this belongs here).

Two costs of uvicorn's per request are cut on the way: the head deadline and uvicorn's
keep-alive wait are deadlines on one timer per connection (``gateway/edge_clock.py``), not a
loop timer armed and cancelled per request, and a response's head and body go out in one
write (``gateway/edge_writes.py``).

``EdgeConfig`` is uvicorn's ``Config`` carrying those limits (``EdgeLimits``) and naming this
protocol, which uvicorn then builds for each connection. ``AnnouncingServer`` says where it
listens only once the port is bound.
"""

from __future__ import annotations

import asyncio
import resource
import socket
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import orjson
from uvicorn.config import Config
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
from uvicorn.server import Server, ServerState

from gateway.edge_clock import ConnectionClock
from gateway.edge_share import KeyShares, Turn, caller_of
from gateway.edge_writes import CombinedWrites

#: file descriptors kept for everything but client connections: the database, result
#: files, outbound provider and webhook calls, the local backend's model files
FD_RESERVE = 256
#: past the cap, this many more connections are read and answered 503 before new ones are
#: closed unanswered
OVERFLOW_FRACTION = 0.125
#: the header deadline of a connection over the cap: it only waits for its 503
OVER_CAP_HEADER_TIMEOUT = 2.0


@dataclass(frozen=True, slots=True)
class EdgeLimits:
    header_timeout: float
    max_header_bytes: int
    max_connections: int
    #: most requests of one key running at once; more are held (``gateway/edge_share.py``);
    #: 0: none held
    running_per_key: int = 0

    @property
    def overflow(self) -> int:
        return max(16, int(self.max_connections * OVERFLOW_FRACTION))


def raise_fd_limit() -> int:
    """Raise this process's soft file-descriptor limit to its hard limit; the new soft one."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY:
        hard = max(soft, 1 << 20)
    if soft != resource.RLIM_INFINITY and soft < hard:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
            soft = hard
        except (ValueError, OSError):
            pass
    return int(soft)


def connection_cap(wanted: int, fd_limit: int) -> int:
    """The connection cap: ``wanted``, lowered so that the cap, its overflow and the
    reserve fit in the file-descriptor limit."""
    room = int((fd_limit - FD_RESERVE) / (1 + OVERFLOW_FRACTION))
    return max(1, min(wanted, room))


def _plain(status: int, reason: bytes, message: str, extra: bytes = b"") -> bytes:
    body = orjson.dumps({"error": {"message": message, "type": "server_error", "code": None}})
    return b"".join(
        [
            b"HTTP/1.1 %d %s\r\n" % (status, reason),
            b"content-type: application/json\r\n",
            b"content-length: %d\r\n" % len(body),
            extra,
            b"connection: close\r\n\r\n",
            body,
        ]
    )


REQUEST_TIMEOUT = _plain(
    408, b"Request Timeout", "The request head did not arrive in time; the connection is closed."
)
HEADERS_TOO_LARGE = _plain(
    431, b"Request Header Fields Too Large", "The request line and headers are too large."
)


async def _over_capacity(scope: Any, receive: Any, send: Any) -> None:
    """The answer to a request on a connection past the cap."""
    body = orjson.dumps(
        {
            "error": {
                "message": "The gateway has too many open connections; retry shortly.",
                "type": "server_error",
                "code": "too_many_connections",
            }
        }
    )
    await send(
        {
            "type": "http.response.start",
            "status": 503,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                (b"retry-after", b"1"),
                (b"connection", b"close"),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


class GuardedHttpToolsProtocol(HttpToolsProtocol, Turn):
    """uvicorn's httptools protocol with a header deadline, a head size cap, a connection
    cap and per-key shares of running requests (module docstring)."""

    def __init__(
        self,
        config: Config,
        server_state: ServerState,
        app_state: dict[str, Any],
        _loop: asyncio.AbstractEventLoop | None = None,
    ) -> None:
        if not isinstance(config, EdgeConfig):
            raise TypeError("GuardedHttpToolsProtocol needs an EdgeConfig (its limits)")
        super().__init__(config, server_state, app_state, _loop)
        self.edge = config.edge_limits
        self.shares = config.key_shares
        #: the request held for its caller's share: (caller, cycle, app)
        self.held: tuple[bytes, Any, Any] | None = None
        self.over_cap = False
        self.in_head = True
        self.head_bytes = 0
        #: the head deadline and uvicorn's keep-alive wait, one loop timer for both
        self.clock = ConnectionClock(
            self.loop, self._head_timed_out, self.timeout_keep_alive_handler
        )

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        open_now = len(self.connections)  # before this one is added
        super().connection_made(transport)
        self.writes = CombinedWrites(transport, self.loop)
        if open_now >= self.edge.max_connections + self.edge.overflow:
            transport.abort()  # past the overflow: keep the descriptors for accepted work
            return
        self.over_cap = open_now >= self.edge.max_connections
        self.clock.start_head(self._head_timeout())

    def connection_lost(self, exc: Exception | None) -> None:
        self.clock.stop()
        if self.held is not None:
            self.shares.drop(self.held[0], self)
            self.held = None
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self.in_head:
            if self.clock.head is None:  # the first byte of a keep-alive connection's next head
                self.clock.start_head(self._head_timeout())
            total = self.head_bytes + len(data)
            if total > self.edge.max_header_bytes:
                end = data.find(b"\r\n\r\n")
                if end < 0 or self.head_bytes + end + 4 > self.edge.max_header_bytes:
                    self._refuse(HEADERS_TOO_LARGE)
                    return
            self.head_bytes = total
        super().data_received(data)

    def on_headers_complete(self) -> None:
        self.in_head = False
        self.clock.head = None
        super().on_headers_complete()

    def on_message_complete(self) -> None:
        super().on_message_complete()
        self.in_head = True
        self.head_bytes = 0

    def _start_asgi_task(self, cycle: Any, app: Any) -> None:
        cycle.transport = self.writes  # its head and body in one write (edge_writes.py)
        if self.over_cap:
            super()._start_asgi_task(cycle, _over_capacity)
            return
        caller = caller_of(cycle.scope) if self.shares.per_key else None
        if caller is None:
            super()._start_asgi_task(cycle, app)
        elif self.shares.enter(caller):
            self._run_shared(caller, cycle, app)
        else:  # past its caller's share: parsed, and nothing more until its turn
            self.flow.pause_reading()
            self.held = (caller, cycle, app)
            self.shares.hold(caller, self)

    def _run_shared(self, caller: bytes, cycle: Any, app: Any) -> None:
        shares = self.shares

        async def counted(scope: Any, receive: Any, send: Any) -> None:
            try:
                await app(scope, receive, send)
            finally:
                shares.leave(caller)

        super()._start_asgi_task(cycle, counted)

    # Turn: what the shares see of a held request
    def gone(self) -> bool:
        return self.transport.is_closing()

    def start(self) -> None:
        if self.held is None:
            raise RuntimeError("start() of a connection that holds no request")
        caller, cycle, app = self.held
        self.held = None
        self.flow.resume_reading()
        # one loop turn later: what other keys sent meanwhile is read, and queued, first
        self.loop.call_soon(self._run_shared, caller, cycle, app)

    def shutdown(self) -> None:
        if self.held is not None:  # the server stops: answer it now, whatever the share
            caller = self.held[0]
            self.shares.drop(caller, self)
            self.shares.force(caller)
            self.start()
        super().shutdown()

    def on_response_complete(self) -> None:
        # uvicorn's, but for its keep-alive wait: a deadline on the connection's clock
        # (gateway/edge_clock.py) rather than a loop timer armed here for every response
        # and cancelled by the next request
        self.server_state.total_requests += 1
        if self.transport.is_closing():
            return
        self.flow.resume_reading()
        if self.pipeline:
            cycle, app = self.pipeline.pop()
            self._start_asgi_task(cycle, app)
        else:
            self.clock.start_idle(self.timeout_keep_alive)

    def _unset_keepalive_if_required(self) -> None:
        self.clock.idle = None  # bytes came (or the connection is lost): no longer idle
        super()._unset_keepalive_if_required()  # uvicorn's own timer, never armed here

    def _head_timeout(self) -> float:
        return OVER_CAP_HEADER_TIMEOUT if self.over_cap else self.edge.header_timeout

    def _head_timed_out(self) -> None:
        if self.in_head and not self.transport.is_closing():
            # a connection that has not started a request is closed quietly; one caught in
            # the middle of a head is told why
            self._refuse(REQUEST_TIMEOUT if self.head_bytes else b"")

    def send_400_response(self, msg: str) -> None:
        self.writes.flush()  # after what a response in flight wrote
        super().send_400_response(msg)

    def _refuse(self, answer: bytes) -> None:
        self.clock.stop()
        self.writes.flush()
        if answer:
            self.transport.write(answer)
        self.transport.close()


class EdgeConfig(Config):
    """uvicorn's configuration, serving HTTP through ``GuardedHttpToolsProtocol``."""

    def __init__(self, app: Any, *, edge_limits: EdgeLimits, **kwargs: Any) -> None:
        super().__init__(app, http=GuardedHttpToolsProtocol, **kwargs)
        self.edge_limits = edge_limits
        #: every connection's share of its key's running requests, counted together
        self.key_shares = KeyShares(edge_limits.running_per_key)


class AnnouncingServer(Server):
    """uvicorn's server, calling ``announce`` once its sockets are bound and serving.

    Not before: on a busy port uvicorn logs the bind error and exits (status 1), and an
    operator must not have read "listening" first. (``backserv serve`` prints its
    "Back.Serv listening on ..." line here.)
    """

    def __init__(self, config: Config, announce: Callable[[], None]) -> None:
        super().__init__(config)
        self.announce = announce

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets)
        if self.started and not self.should_exit:
            self.announce()
