"""The lean loopback POST the webhook dispatcher uses, against hand-written HTTP answers."""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections import deque
from collections.abc import AsyncIterator

import pytest

from tests.emulators.webhook_http import LoopbackPoster

OK = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok"


class RawServer:
    """Answers each request with the next canned bytes; ``None`` closes the connection
    without answering. Counts connections and the request bodies it read."""

    def __init__(self) -> None:
        self.answers: deque[bytes | None] = deque()
        self.connections = 0
        self.bodies: list[bytes] = []

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = 0
                for line in head.split(b"\r\n"):
                    name, _, value = line.partition(b":")
                    if name.lower() == b"content-length":
                        length = int(value)
                self.bodies.append(await reader.readexactly(length))
                answer = self.answers.popleft() if self.answers else OK
                if answer is None:
                    break
                writer.write(answer)
                await writer.drain()
                delimited = b"content-length" in answer or b"chunked" in answer
                if not delimited or b"connection: close" in answer.lower():
                    break
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()
            with contextlib.suppress(ConnectionError):
                await writer.wait_closed()


@pytest.fixture
async def raw() -> AsyncIterator[tuple[RawServer, str, LoopbackPoster]]:
    server = RawServer()
    listener = await asyncio.start_server(server.handle, "127.0.0.1", 0)
    port = listener.sockets[0].getsockname()[1]
    poster = LoopbackPoster()
    yield server, f"http://127.0.0.1:{port}/hook?x=1", poster
    await poster.aclose()
    listener.close()
    await listener.wait_closed()


async def test_connections_are_kept_alive_and_reused(
    raw: tuple[RawServer, str, LoopbackPoster],
) -> None:
    server, url, poster = raw
    for n in range(3):
        assert await poster.post(url, b"body %d" % n, {"x-a": "1"}, timeout=2) == 200
    assert server.connections == 1
    assert server.bodies == [b"body 0", b"body 1", b"body 2"]


async def test_a_kept_connection_the_server_dropped_is_replaced(
    raw: tuple[RawServer, str, LoopbackPoster],
) -> None:
    server, url, poster = raw
    server.answers.extend([OK, None])  # answers, then hangs up on the next request
    assert await poster.post(url, b"one", {}, timeout=2) == 200
    assert await poster.post(url, b"two", {}, timeout=2) == 200
    assert server.connections == 2
    assert server.bodies == [b"one", b"two", b"two"]


async def test_chunked_and_read_to_close_answers(
    raw: tuple[RawServer, str, LoopbackPoster],
) -> None:
    server, url, poster = raw
    chunked = b"HTTP/1.1 401 No\r\ntransfer-encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n"
    to_close = b"HTTP/1.1 500 Boom\r\n\r\nthe body runs to the end"
    server.answers.extend([chunked, to_close])
    assert await poster.post(url, b"a", {}, timeout=2) == 401
    assert await poster.post(url, b"b", {}, timeout=2) == 500
    assert server.connections == 1  # the chunked answer kept it; the last one closed it
    assert await poster.post(url, b"c", {}, timeout=2) == 200
    assert server.connections == 2


async def test_silence_times_out_and_a_closed_port_refuses() -> None:
    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read()
        writer.close()

    listener = await asyncio.start_server(silent, "127.0.0.1", 0)
    port = listener.sockets[0].getsockname()[1]
    poster = LoopbackPoster()
    with pytest.raises(TimeoutError):
        await poster.post(f"http://127.0.0.1:{port}/", b"", {}, timeout=0.05)
    listener.close()
    await listener.wait_closed()
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        closed = probe.getsockname()[1]
    with pytest.raises(OSError):
        await poster.post(f"http://127.0.0.1:{closed}/", b"", {}, timeout=1)
    with pytest.raises(ValueError):
        await poster.post("https://127.0.0.1/", b"", {}, timeout=1)
    await poster.aclose()
