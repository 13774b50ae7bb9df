"""The deadlines of gateway/edge.py on keep-alive connections (gateway/edge_clock.py), in
process: each request head has its own deadline, counted from its first byte (a connection's
first head: from its opening), and an idle connection is closed after the keep-alive wait,
counted from its last answer. The first head of a connection is tested against a real server
in tests/scenarios/test_edge.py."""

from __future__ import annotations

import asyncio
import time

import pytest

from tests.test_edge import Client, Gates, connect, edge

TIMEOUT = 0.5
HALF_HEAD = b"GET /late HTTP/1.1\r\nhost: x\r\n"


async def served(app: Gates, conn: Client, path: str) -> None:
    app.release(path)
    conn.send(path)
    assert await conn.answer() == (200, f"{path} 0".encode())


@pytest.mark.parametrize("idle", [0.25, 2 * TIMEOUT])
async def test_a_stalled_head_after_a_served_request_gets_a_408_at_its_own_deadline(
    idle: float,
) -> None:
    app = Gates()
    async with edge(app, header_timeout=TIMEOUT) as server:
        conn = await connect(server)
        await served(app, conn, "/first")
        await asyncio.sleep(idle)  # shorter, then longer than the deadline, between heads
        conn.writer.write(HALF_HEAD)
        sent = time.monotonic()
        answer = await asyncio.wait_for(conn.reader.read(), 10)  # until the server closes
        waited = time.monotonic() - sent
    assert answer.startswith(b"HTTP/1.1 408 "), answer[:100]
    assert waited >= TIMEOUT - 0.05  # not the first head's deadline, nor an idle one's


async def test_heads_that_each_arrive_in_time_are_served_however_long_the_connection_lives() -> (
    None
):
    app = Gates()
    async with edge(app, header_timeout=TIMEOUT) as server:
        conn = await connect(server)
        started = time.monotonic()
        for i in range(8):
            await served(app, conn, f"/r{i}")
            await asyncio.sleep(TIMEOUT / 3)
        assert time.monotonic() - started > 2 * TIMEOUT
        await served(app, conn, "/last")  # still open


@pytest.mark.parametrize("requests", [1, 6])
async def test_an_idle_connection_is_closed_after_the_keep_alive_wait_from_its_last_answer(
    requests: int,
) -> None:
    app = Gates()
    # the head deadline far later: a keep-alive close that waited for its timer would time out
    async with edge(app, keep_alive=TIMEOUT, header_timeout=30) as server:
        conn = await connect(server)
        for i in range(requests):  # each well within the wait of the one before
            await served(app, conn, f"/r{i}")
            await asyncio.sleep(TIMEOUT / 3)
        answered = time.monotonic() - TIMEOUT / 3
        rest = await asyncio.wait_for(conn.reader.read(), 10)  # until the server closes
        waited = time.monotonic() - answered
    assert rest == b""
    assert waited >= TIMEOUT - 0.05
