"""The HTTP edge's per-key shares (gateway/edge.py with gateway/edge_share.py), in process:
the protocol on a real loopback socket in front of an app whose requests run until the test
releases them. The edge's other guards (head deadline and size, connection cap) are tested
against a real server in tests/scenarios/test_edge.py."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

from uvicorn.server import ServerState

from gateway.edge import EdgeConfig, EdgeLimits, GuardedHttpToolsProtocol


class Gates:
    """An ASGI app: a request is named by its path, reads its whole body, then waits until
    the test releases its name; it answers the name and the body's length."""

    def __init__(self) -> None:
        self.started: list[str] = []
        self.gates: dict[str, asyncio.Event] = {}

    def gate(self, name: str) -> asyncio.Event:
        return self.gates.setdefault(name, asyncio.Event())

    def release(self, *names: str) -> None:
        for name in names:
            self.gate(name).set()

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        name = scope["path"]
        size, more = 0, True
        while more:
            message = await receive()
            size += len(message.get("body", b""))
            more = message.get("more_body", False)
        self.started.append(name)
        await self.gate(name).wait()
        body = f"{name} {size}".encode()
        headers = [(b"content-length", str(len(body)).encode())]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": body})


@dataclass
class Edge:
    config: EdgeConfig
    state: ServerState
    port: int
    clients: list[Client] = field(default_factory=list)

    def protocol_of(self, conn: Client) -> GuardedHttpToolsProtocol:
        """The server's side of a client connection."""
        here = conn.writer.get_extra_info("sockname")
        for protocol in self.state.connections:
            if isinstance(protocol, GuardedHttpToolsProtocol) and protocol.client == here[:2]:
                return protocol
        raise LookupError(f"no server connection for {here}")


@dataclass
class Client:
    reader: asyncio.StreamReader
    writer: asyncio.StreamWriter

    def send(self, path: str, key: str | None = None, body: bytes = b"") -> None:
        self.writer.write(head(path, key, body) + body)

    async def answer(self) -> tuple[int, bytes]:
        headers = await asyncio.wait_for(self.reader.readuntil(b"\r\n\r\n"), 10)
        length = next(
            int(line.split(b":")[1])
            for line in headers.lower().split(b"\r\n")
            if line.startswith(b"content-length:")
        )
        return int(headers.split(b" ")[1]), await self.reader.readexactly(length)


def head(path: str, key: str | None, body: bytes = b"", content_length: int | None = None) -> bytes:
    method = b"POST" if body or content_length else b"GET"
    lines = [b"%s %s HTTP/1.1" % (method, path.encode()), b"host: x"]
    if key is not None:
        lines.append(b"authorization: Bearer " + key.encode())
    if body or content_length:
        lines.append(b"content-length: %d" % (content_length or len(body)))
    return b"\r\n".join(lines) + b"\r\n\r\n"


@contextlib.asynccontextmanager
async def edge(
    app: Gates, per_key: int = 2, header_timeout: float = 10, keep_alive: float = 5
) -> AsyncIterator[Edge]:
    limits = EdgeLimits(
        header_timeout=header_timeout,
        max_header_bytes=65536,
        max_connections=100,
        running_per_key=per_key,
    )
    config = EdgeConfig(
        app, edge_limits=limits, lifespan="off", log_level="warning", timeout_keep_alive=keep_alive
    )
    config.load()
    state = ServerState()
    loop = asyncio.get_running_loop()
    server = await loop.create_server(
        lambda: GuardedHttpToolsProtocol(config, state, {}, loop), "127.0.0.1", 0
    )
    running = Edge(config, state, server.sockets[0].getsockname()[1])
    try:
        yield running
    finally:
        app.release(*app.gates, *app.started)
        for client in running.clients:
            client.writer.close()
            with contextlib.suppress(OSError):
                await client.writer.wait_closed()
        for protocol in list(state.connections):
            protocol.transport.close()
        server.close()
        await server.wait_closed()
        await asyncio.gather(*state.tasks, return_exceptions=True)


async def connect(server: Edge) -> Client:
    client = Client(*await asyncio.open_connection("127.0.0.1", server.port))
    server.clients.append(client)
    return client


async def settle() -> None:
    """Time for anything that would happen next to happen (before asserting it did not)."""
    for _ in range(20):
        await asyncio.sleep(0.005)


async def until(condition: Callable[[], bool]) -> None:
    """Until ``condition()`` holds; fails after 10 s."""
    async with asyncio.timeout(10):
        while True:
            if condition():
                return
            await asyncio.sleep(0.005)


async def started(app: Gates, count: int) -> None:
    await until(lambda: len(app.started) >= count)


def held_by(server: Edge) -> list[GuardedHttpToolsProtocol]:
    return [
        p
        for p in server.state.connections
        if isinstance(p, GuardedHttpToolsProtocol) and p.held is not None
    ]


async def held_third(server: Edge, app: Gates) -> tuple[list[Client], GuardedHttpToolsProtocol]:
    """Key A's requests /a0 and /a1 running, /a2 held on a third connection."""
    conns = [await connect(server) for _ in range(3)]
    for i, conn in enumerate(conns[:2]):
        conn.send(f"/a{i}", "A")
        await started(app, i + 1)
    conns[2].send("/a2", "A")
    await until(lambda: bool(held_by(server)))
    await settle()
    assert app.started == ["/a0", "/a1"]
    return conns, server.protocol_of(conns[2])


async def test_a_request_past_its_keys_share_is_held_paused_while_another_key_runs() -> None:
    app = Gates()
    async with edge(app) as server:
        (a0, a1, a2), held = await held_third(server, app)
        assert held.held is not None  # parsed, but no task: nothing queued on the loop
        assert held.flow.read_paused and not held.transport.is_reading()
        assert len(server.state.tasks) == 2
        b = await connect(server)
        b.send("/b0", "B")
        await started(app, 3)
        assert app.started == ["/a0", "/a1", "/b0"]  # B did not wait behind A
        app.release("/b0")
        assert await b.answer() == (200, b"/b0 0")
        app.release("/a0")
        assert await a0.answer() == (200, b"/a0 0")
        await started(app, 4)
        assert app.started[-1] == "/a2"  # A's turn came when one of its own ended
        assert held.held is None and held.transport.is_reading()
        app.release("/a1", "/a2")
        assert await a1.answer() == (200, b"/a1 0")
        assert await a2.answer() == (200, b"/a2 0")
        shares = server.config.key_shares
        assert shares.running == {} and shares.held == {}


async def test_a_held_connections_next_bytes_stay_unread_until_its_turn_and_none_are_lost() -> None:
    app = Gates()
    async with edge(app) as server:
        (a0, a1, a2), held = await held_third(server, app)
        a2.send("/a3", "A", body=b"x" * 10)  # pipelined behind the held request
        await settle()
        assert not held.pipeline  # not even parsed
        app.release("/a0", "/a1", "/a2", "/a3")
        answers = [await conn.answer() for conn in (a0, a1, a2, a2)]
        assert answers == [(200, b"/a0 0"), (200, b"/a1 0"), (200, b"/a2 0"), (200, b"/a3 10")]
        assert app.started == ["/a0", "/a1", "/a2", "/a3"]


async def test_a_held_requests_body_is_read_once_its_turn_comes() -> None:
    app = Gates()
    async with edge(app) as server:
        conns = [await connect(server) for _ in range(3)]
        for i, conn in enumerate(conns[:2]):
            conn.send(f"/a{i}", "A")
        await started(app, 2)
        late = conns[2]
        late.writer.write(head("/upload", "A", content_length=100_000) + b"y" * 1000)
        await until(lambda: bool(held_by(server)))
        assert server.protocol_of(late).held is not None
        late.writer.write(b"y" * 99_000)  # the rest stays in the socket meanwhile
        await settle()
        app.release("/a0", "/a1", "/upload")
        assert await late.answer() == (200, b"/upload 100000")


async def test_a_key_flooding_from_many_connections_is_served_whole_two_at_a_time() -> None:
    app = Gates()
    async with edge(app) as server:
        conns = [await connect(server) for _ in range(12)]
        for i, conn in enumerate(conns):
            conn.send(f"/f{i}", "A")
        await until(lambda: len(held_by(server)) == 10)
        assert len(app.started) == 2
        for i in range(12):
            app.release(f"/f{i}")
        answers = await asyncio.gather(*(conn.answer() for conn in conns))
        assert sorted(answers) == sorted((200, f"/f{i} 0".encode()) for i in range(12))
        assert server.config.key_shares.running == {}


async def test_keyless_requests_long_waits_and_a_share_of_zero_are_never_held() -> None:
    for per_key, paths, key in [
        (2, ["/files/1", "/files/2", "/files/3"], None),
        (2, ["/v1/jobs/1?wait=5", "/v1/jobs/2?wait=5", "/v1/jobs/3/events"], "A"),
        (0, ["/x1", "/x2", "/x3"], "A"),
    ]:
        app = Gates()
        async with edge(app, per_key=per_key) as server:
            conns = [await connect(server) for _ in paths]
            for conn, path in zip(conns, paths, strict=True):
                conn.send(path, key)
            await started(app, 3)
            assert not held_by(server), (per_key, paths)


async def test_at_shutdown_a_held_request_is_started_and_answered() -> None:
    app = Gates()
    async with edge(app) as server:
        (a0, a1, a2), held = await held_third(server, app)
        for protocol in list(server.state.connections):
            protocol.shutdown()
        await started(app, 3)
        assert app.started == ["/a0", "/a1", "/a2"] and held.held is None
        app.release("/a0", "/a1", "/a2")
        assert [await conn.answer() for conn in (a0, a1, a2)] == [
            (200, b"/a0 0"),
            (200, b"/a1 0"),
            (200, b"/a2 0"),
        ]
        assert server.config.key_shares.running == {}


async def test_a_held_connection_lost_is_forgotten_and_never_started() -> None:
    app = Gates()
    async with edge(app) as server:
        (a0, a1, _), held = await held_third(server, app)
        held.transport.abort()  # as when the socket fails under a paused read
        await until(lambda: not server.config.key_shares.held)
        app.release("/a0", "/a1")
        assert [await a0.answer(), await a1.answer()] == [(200, b"/a0 0"), (200, b"/a1 0")]
        await settle()
        assert app.started == ["/a0", "/a1"]
        assert server.config.key_shares.running == {}
