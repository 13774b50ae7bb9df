"""HTTP/1.1 on the gateway's own connections (gateway/http1.py, under gateway/lean_pool.py),
through httpx as the gateway uses it, against scripted loopback servers."""

from __future__ import annotations

import asyncio
import gc
from collections.abc import AsyncIterator, Awaitable, Callable

import httpx
import pytest

from gateway.lean_client import LeanHttpClient
from gateway.lean_pool import LeanPool
from tests.lean_support import lean_transport

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


class Server:
    """A loopback server running ``handler`` per connection; counts its connections."""

    def __init__(self, handler: Handler) -> None:
        self.handler = handler
        self.connections = 0
        self.heads: list[bytes] = []
        self.url = ""

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            await self.handler(reader, writer)
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    async def head(self, reader: asyncio.StreamReader) -> bytes:
        head = await reader.readuntil(b"\r\n\r\n")
        self.heads.append(head)
        return head


@pytest.fixture
async def serve() -> AsyncIterator[Callable[[Handler], Awaitable[Server]]]:
    servers: list[asyncio.Server] = []

    async def start(handler: Handler) -> Server:
        server = Server(handler)
        listening = await asyncio.start_server(server._serve, "127.0.0.1", 0)
        servers.append(listening)
        server.url = f"http://127.0.0.1:{listening.sockets[0].getsockname()[1]}/"
        return server

    yield start
    for listening in servers:
        listening.close()


def _client(max_connections: int = 4) -> tuple[httpx.AsyncClient, LeanPool]:
    transport = lean_transport(limits=httpx.Limits(max_connections=max_connections))
    pool = transport._pool
    assert isinstance(pool, LeanPool)
    return httpx.AsyncClient(transport=transport, timeout=5.0), pool


def _answering(*answers: bytes) -> Callable[[Server], Handler]:
    """A handler answering successive requests on a connection with ``answers`` in turn."""

    def make(server: Server) -> Handler:
        async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            for answer in answers:
                await server.head(reader)
                writer.write(answer)
                await writer.drain()
            await reader.read()  # until the client closes

        return handle

    return make


async def _start(
    serve: Callable[[Handler], Awaitable[Server]], make: Callable[[Server], Handler]
) -> Server:
    holder: list[Server] = []

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await make(holder[0])(reader, writer)

    server = await serve(handle)
    holder.append(server)
    return server


async def test_a_chunked_answer_is_read_whole_and_its_connection_reused(
    serve: Callable[[Handler], Awaitable[Server]],
) -> None:
    chunked = (
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n"
    )
    server = await _start(serve, _answering(chunked, chunked))
    client, pool = _client()
    async with client:
        assert (await client.get(server.url)).text == "abcde"
        assert (await client.get(server.url)).text == "abcde"
        assert pool.idle_connections == 1
    assert server.connections == 1


async def test_an_unframed_answer_runs_to_the_close_and_its_connection_is_not_kept(
    serve: Callable[[Handler], Awaitable[Server]],
) -> None:
    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(b"HTTP/1.1 200 OK\r\n\r\nuntil the ")
        await writer.drain()
        writer.write(b"end")
        writer.close()

    server = await serve(handle)
    client, pool = _client()
    async with client:
        assert (await client.get(server.url)).text == "until the end"
        assert pool.connections == 0


async def test_head_and_204_answers_end_at_their_head(
    serve: Callable[[Handler], Awaitable[Server]],
) -> None:
    server = await _start(
        serve,
        _answering(
            b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n",
            b"HTTP/1.1 204 No Content\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok",
        ),
    )
    client, _ = _client()
    async with client:
        head = await client.head(server.url)
        assert (head.status_code, head.headers["content-length"], head.content) == (
            200,
            "1000",
            b"",
        )
        assert (await client.delete(server.url)).status_code == 204
        assert (await client.get(server.url)).text == "ok"
    assert server.connections == 1


async def test_an_informational_answer_is_skipped(
    serve: Callable[[Handler], Awaitable[Server]],
) -> None:
    server = await _start(
        serve,
        _answering(
            b"HTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\nHTTP/1.1 201 Created\r\n"
            b"Content-Length: 4\r\n\r\nmade"
        ),
    )
    client, _ = _client()
    async with client:
        answer = await client.post(server.url, json={"a": 1})
    assert (answer.status_code, answer.text) == (201, "made")


async def test_connection_close_in_the_answer_is_honoured(
    serve: Callable[[Handler], Awaitable[Server]],
) -> None:
    closing = b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 2\r\n\r\nok"
    server = await _start(serve, _answering(closing))
    client, pool = _client()
    async with client:
        assert (await client.get(server.url)).text == "ok"
        assert pool.connections == 0
        assert (await client.get(server.url)).text == "ok"
    assert server.connections == 2


async def test_a_malformed_answer_is_a_protocol_error_and_frees_its_connection(
    serve: Callable[[Handler], Awaitable[Server]],
) -> None:
    server = await _start(serve, _answering(b"HTTP/1.1 abc nonsense\r\n\r\n"))
    client, pool = _client()
    async with client:
        with pytest.raises(httpx.RemoteProtocolError, match="malformed"):
            await client.get(server.url)
        assert pool.connections == 0


async def test_a_post_the_server_dropped_unanswered_is_not_sent_again(
    serve: Callable[[Handler], Awaitable[Server]],
) -> None:
    ok = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"

    def make(server: Server) -> Handler:
        async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            await server.head(reader)
            writer.write(ok)
            await writer.drain()
            await server.head(reader)  # the second request is read, and never answered

        return handle

    server = await _start(serve, make)
    client, _ = _client()
    async with client:
        assert (await client.post(server.url, content=b"")).text == "ok"
        with pytest.raises(httpx.RemoteProtocolError, match="without answering"):
            await client.post(server.url, content=b"")
    assert (server.connections, len(server.heads)) == (1, 2)


async def test_a_get_on_a_kept_connection_closed_as_it_was_sent_is_sent_once_more(
    serve: Callable[[Handler], Awaitable[Server]],
) -> None:
    ok = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"

    def make(server: Server) -> Handler:
        async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            await server.head(reader)
            writer.write(ok)
            await writer.drain()
            if server.connections == 1:
                await server.head(reader)  # the race: read, then the connection drops
                return
            await reader.read()

        return handle

    server = await _start(serve, make)
    client, _ = _client()
    async with client:
        assert (await client.get(server.url)).text == "ok"
        assert (await client.get(server.url)).text == "ok"
    assert server.connections == 2


async def test_a_streamed_request_body_goes_chunked(
    serve: Callable[[Handler], Awaitable[Server]],
) -> None:
    received: list[bytes] = []

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = await reader.readuntil(b"\r\n\r\n")
        assert b"transfer-encoding: chunked" in head.lower()
        while (size := int((await reader.readuntil(b"\r\n"))[:-2], 16)) > 0:
            received.append(await reader.readexactly(size))
            await reader.readexactly(2)
        await reader.readexactly(2)
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
        await writer.drain()

    async def parts() -> AsyncIterator[bytes]:
        for part in (b"first ", b"", b"second"):
            yield part

    server = await serve(handle)
    client, _ = _client()
    async with client:
        assert (await client.post(server.url, content=parts())).text == "ok"
    assert b"".join(received) == b"first second"


async def test_a_line_break_in_a_header_value_is_refused_before_sending(
    serve: Callable[[Handler], Awaitable[Server]],
) -> None:
    server = await _start(serve, _answering())
    client, pool = _client()
    async with client:
        with pytest.raises(httpx.LocalProtocolError, match="line break"):
            await client.get(server.url, headers={"x-injected": "a\r\nHost: evil"})
        assert pool.connections == 0
    assert server.heads == []


async def test_a_silent_server_is_a_read_timeout_and_frees_the_connection(
    serve: Callable[[Handler], Awaitable[Server]],
) -> None:
    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read()

    server = await serve(handle)
    client, pool = _client()
    async with client:
        with pytest.raises(httpx.ReadTimeout):
            await client.get(server.url, timeout=0.1)
        assert pool.connections == 0


async def test_a_download_abandoned_midway_frees_its_connection(
    serve: Callable[[Handler], Awaitable[Server]],
) -> None:
    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 1000000\r\n\r\n" + b"x" * 1000)
        await writer.drain()
        await reader.read()

    server = await serve(handle)
    client, pool = _client()
    async with client:
        async with client.stream("GET", server.url) as answer:
            async for _ in answer.aiter_raw():
                break
        assert pool.connections == 0


async def test_a_full_pool_is_a_pool_timeout_for_the_one_that_waits_too_long(
    serve: Callable[[Handler], Awaitable[Server]],
) -> None:
    release = asyncio.Event()

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        await release.wait()
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
        await writer.drain()
        await reader.read()

    server = await serve(handle)
    client, pool = _client(max_connections=1)
    async with client:
        first = asyncio.create_task(client.get(server.url))
        await asyncio.sleep(0.05)
        with pytest.raises(httpx.PoolTimeout):
            await client.get(server.url, timeout=httpx.Timeout(5.0, pool=0.05))
        release.set()
        assert (await first).text == "ok"
        assert (pool.connections, pool.idle_connections) == (1, 1)


async def test_a_large_body_arrives_intact(
    serve: Callable[[Handler], Awaitable[Server]],
) -> None:
    body = bytes(range(256)) * 8192  # 2 MiB: past the connection's read-ahead limit

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % len(body))
        writer.write(body)
        await writer.drain()
        await reader.read()

    server = await serve(handle)
    client, pool = _client()
    async with client:
        assert (await client.get(server.url)).content == body
        assert pool.idle_connections == 1


async def test_the_trace_hook_hears_the_request_go_out_before_the_answer(
    serve: Callable[[Handler], Awaitable[Server]],
) -> None:
    events: list[str] = []
    server = await _start(serve, _answering(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"))

    async def trace(event: str, info: dict[str, object]) -> None:
        events.append(f"{event} ({len(server.heads)} read)")

    client, _ = _client()
    async with client:
        await client.post(server.url, json={"a": 1}, extensions={"trace": trace})
    assert events == [
        "http11.send_request_headers.started (0 read)",
        "http11.send_request_body.complete (0 read)",
        "http11.receive_response_headers.complete (1 read)",
    ]


async def test_an_answer_leaves_no_garbage_cycle_behind(
    serve: Callable[[Handler], Awaitable[Server]],
) -> None:
    """Each answer's parser is let go at its end: nothing of a request is left for the
    garbage collector (the gateway's client, gateway/lean_client.py, as it calls)."""
    ok = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"
    server = await _start(serve, _answering(ok, ok, b"HTTP/1.1 abc nonsense\r\n\r\n"))
    client = LeanHttpClient(limits=httpx.Limits())
    gc.collect()
    gc.disable()
    gc.set_debug(gc.DEBUG_SAVEALL)
    try:
        assert (await client.request("GET", server.url, timeout=5)).text == "ok"
        answer = await client.open_get(httpx.URL(server.url), timeout=5)
        assert await answer.aread() == b"ok"
        await answer.aclose()
        with pytest.raises(httpx.RemoteProtocolError):  # a POST: not sent again
            await client.request("POST", server.url, timeout=5)
        gc.collect()
        per_answer = ("_Answer", "_Body", "HttpResponseParser")  # not the pool's own cycle
        left = [o for o in gc.garbage if type(o).__name__ in per_answer]
    finally:
        gc.set_debug(0)
        gc.garbage.clear()
        gc.enable()
        await client.aclose()
    assert left == []
