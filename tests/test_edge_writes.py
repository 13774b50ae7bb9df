"""gateway/edge_writes.py: a response's head and body in one write, and nothing held back
past the loop turn it was written in."""

from __future__ import annotations

import asyncio
from typing import Any

from gateway.edge_writes import HOLD_BYTES, CombinedWrites
from tests.test_edge import Gates, connect, edge, head


class Socket(asyncio.Transport):
    """A transport that records each write call."""

    def __init__(self) -> None:
        super().__init__()
        self.calls: list[bytes] = []
        self.closed = False

    def write(self, data: bytes | bytearray | memoryview) -> None:
        self.calls.append(bytes(data))

    def writelines(self, list_of_data: Any) -> None:
        self.calls.append(b"".join(list_of_data))

    def close(self) -> None:
        self.closed = True

    def is_closing(self) -> bool:
        return self.closed


async def test_a_head_and_body_written_in_one_turn_go_in_one_call() -> None:
    socket = Socket()
    writes = CombinedWrites(socket, asyncio.get_running_loop())
    writes.write(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n")
    writes.write(b"{}")
    assert socket.calls == [b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n{}"]
    await asyncio.sleep(0)
    assert len(socket.calls) == 1  # the turn's end finds nothing left


async def test_a_write_alone_goes_out_at_the_end_of_its_turn() -> None:
    socket = Socket()
    writes = CombinedWrites(socket, asyncio.get_running_loop())
    writes.write(b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\n\r\n")
    await asyncio.sleep(0)
    assert socket.calls == [b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\n\r\n"]


async def test_close_writes_what_is_held_first_and_large_writes_are_never_held() -> None:
    socket = Socket()
    writes = CombinedWrites(socket, asyncio.get_running_loop())
    big = b"x" * (HOLD_BYTES + 1)
    writes.write(big)
    assert socket.calls == [big]
    writes.write(b"last")
    writes.close()
    assert socket.calls == [big, b"last"] and socket.closed
    await asyncio.sleep(0)
    assert socket.calls == [big, b"last"]


class HeadThenBody(Gates):
    """Sends its head at once, its body (``chunks`` parts) only once released."""

    def __init__(self, chunks: list[bytes]) -> None:
        super().__init__()
        self.chunks = chunks

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        name = scope["path"]
        length = sum(map(len, self.chunks))
        headers = [(b"content-length", str(length).encode())]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        self.started.append(name)
        await self.gate(name).wait()
        for i, chunk in enumerate(self.chunks):
            more = i < len(self.chunks) - 1
            await send({"type": "http.response.body", "body": chunk, "more_body": more})


async def test_a_head_sent_before_its_body_reaches_the_client_before_the_body() -> None:
    app = HeadThenBody([b"late"])
    async with edge(app) as server:
        conn = await connect(server)
        conn.send("/stream")
        got = await asyncio.wait_for(conn.reader.readuntil(b"\r\n\r\n"), 10)
        assert got.startswith(b"HTTP/1.1 200 ")
        app.release("/stream")
        assert await asyncio.wait_for(conn.reader.readexactly(4), 10) == b"late"


async def test_a_large_body_in_parts_and_a_closing_answer_arrive_whole_and_in_order() -> None:
    chunks = [bytes([65 + i]) * 50_000 for i in range(8)]
    app = HeadThenBody(chunks)
    async with edge(app) as server:
        conn = await connect(server)
        app.release("/big")
        conn.writer.write(head("/big", None).replace(b"host: x", b"host: x\r\nconnection: close"))
        answer = await asyncio.wait_for(conn.reader.read(), 10)  # until the server closes
    head_part, _, body = answer.partition(b"\r\n\r\n")
    assert head_part.startswith(b"HTTP/1.1 200 ")
    assert body == b"".join(chunks)
