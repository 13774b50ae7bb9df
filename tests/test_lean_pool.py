"""The connection pool (gateway/lean_pool.py) against real loopback servers."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import httpx
import pytest

from gateway import lean_pool
from gateway.lean_client import LeanHttpClient
from tests.lean_support import lean_transport, pool_of


@pytest.fixture
async def closing_server() -> AsyncIterator[tuple[str, list[int]]]:
    """Answers one request per connection, offering keep-alive, then closes the connection;
    yields its URL and the client ports it saw."""
    ports: list[int] = []

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        ports.append(writer.get_extra_info("peername")[1])
        await reader.readuntil(b"\r\n\r\n")
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: keep-alive\r\n\r\nok")
        await writer.drain()
        writer.close()
        await writer.wait_closed()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    async with server:
        yield f"http://127.0.0.1:{port}/", ports


async def test_an_idle_connection_the_server_closed_is_not_reused(
    closing_server: tuple[str, list[int]],
) -> None:
    url, ports = closing_server
    async with httpx.AsyncClient(transport=lean_transport(limits=httpx.Limits())) as client:
        for _ in range(3):
            assert (await client.get(url)).text == "ok"
            await asyncio.sleep(0.05)  # the server's close reaches the idle connection
    assert len(set(ports)) == 3


async def test_a_live_idle_connection_is_reused(
    keepalive_server: tuple[str, list[int]],
) -> None:
    url, ports = keepalive_server
    async with httpx.AsyncClient(transport=lean_transport(limits=httpx.Limits())) as client:
        for _ in range(3):
            assert (await client.get(url)).text == "ok"
            await asyncio.sleep(0.02)
    assert len(ports) == 1


@pytest.fixture
async def keepalive_server() -> AsyncIterator[tuple[str, list[int]]]:
    """Keeps each connection open for as many requests as the client sends, answering each
    after a short pause (so requests overlap); yields its URL and the client ports it saw."""
    ports: list[int] = []

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        ports.append(writer.get_extra_info("peername")[1])
        try:
            while await reader.readuntil(b"\r\n\r\n"):
                await asyncio.sleep(0.01)
                writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass  # the client closed the connection
        finally:
            writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    async with server:
        yield f"http://127.0.0.1:{port}/", ports


async def test_concurrent_requests_share_at_most_the_pools_connections(
    keepalive_server: tuple[str, list[int]],
) -> None:
    url, ports = keepalive_server
    transport = lean_transport(limits=httpx.Limits(max_connections=4))
    async with httpx.AsyncClient(transport=transport) as client:
        for _ in range(2):  # the second round reuses the first one's connections
            answers = await asyncio.gather(*(client.get(url) for _ in range(20)))
            assert [a.text for a in answers] == ["ok"] * 20
        assert pool_of(transport).connections <= 4
    assert len(set(ports)) == 4


async def test_one_connection_serves_queued_requests_one_after_another(
    keepalive_server: tuple[str, list[int]],
) -> None:
    url, ports = keepalive_server
    transport = lean_transport(limits=httpx.Limits(max_connections=1))
    async with httpx.AsyncClient(transport=transport) as client:
        answers = await asyncio.gather(*(client.get(url) for _ in range(5)))
    assert [a.text for a in answers] == ["ok"] * 5
    assert len(ports) == 1


async def test_idle_connections_past_the_keepalive_limit_are_closed_as_they_come_back(
    keepalive_server: tuple[str, list[int]],
) -> None:
    url, ports = keepalive_server
    transport = lean_transport(limits=httpx.Limits(max_connections=5, max_keepalive_connections=2))
    async with httpx.AsyncClient(transport=transport) as client:
        await asyncio.gather(*(client.get(url) for _ in range(5)))
        assert len(ports) == 5
        assert (pool_of(transport).connections, pool_of(transport).idle_connections) == (2, 2)
        await asyncio.gather(*(client.get(url) for _ in range(2)))
        assert len(ports) == 5  # the two kept were reused


async def test_idle_connections_past_their_expiry_are_closed_at_the_sweep(
    keepalive_server: tuple[str, list[int]], monkeypatch: pytest.MonkeyPatch
) -> None:
    url, ports = keepalive_server
    limits = httpx.Limits(max_connections=5, keepalive_expiry=0.05)
    transport = lean_transport(limits=limits)
    async with httpx.AsyncClient(transport=transport) as client:
        await asyncio.gather(*(client.get(url) for _ in range(3)))
        assert pool_of(transport).idle_connections == 3
        await asyncio.sleep(0.1)
        monkeypatch.setattr(lean_pool, "SWEEP_SECONDS", 0.0)
        pool_of(transport)._sweep_at = 0.0
        assert (await client.get(url)).text == "ok"
        assert (pool_of(transport).connections, len(ports)) == (1, 4)


async def test_a_full_pool_makes_room_by_closing_another_origins_idle_connection(
    keepalive_server: tuple[str, list[int]],
) -> None:
    url, ports = keepalive_server
    other = url.replace("127.0.0.1", "localhost")  # the same server, another origin
    transport = lean_transport(limits=httpx.Limits(max_connections=1))
    async with httpx.AsyncClient(transport=transport) as client:
        assert (await client.get(url)).text == "ok"
        assert (await client.get(other)).text == "ok"
        assert (await client.get(other)).text == "ok"
        assert pool_of(transport).connections == 1
    assert len(ports) == 2


async def test_cookies_an_answer_sets_are_not_sent_with_the_next_request() -> None:
    sent: list[bytes] = []

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while head := await reader.readuntil(b"\r\n\r\n"):
                sent.append(head)
                writer.write(
                    b"HTTP/1.1 200 OK\r\nSet-Cookie: session=abc; Path=/\r\n"
                    b"Content-Length: 2\r\n\r\nok"
                )
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    client = LeanHttpClient(limits=httpx.Limits())
    async with server:
        for _ in range(2):
            answer = await client.request("GET", f"http://127.0.0.1:{port}/", timeout=5)
            assert answer.text == "ok"
        await client.aclose()
    assert len(sent) == 2 and all(b"cookie" not in head.lower() for head in sent)


async def test_a_post_never_goes_out_on_a_connection_idle_past_the_fresh_limit(
    keepalive_server: tuple[str, list[int]], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A server may close an idle connection just as a request goes out on it: a GET is
    then sent again, a POST (a paid submit) is not, so it only takes a fresh connection."""
    url, ports = keepalive_server
    monkeypatch.setattr(lean_pool, "FRESH_SECONDS", 0.05)
    transport = lean_transport(limits=httpx.Limits(max_connections=4))
    async with httpx.AsyncClient(transport=transport) as client:
        assert (await client.post(url, content=b"")).text == "ok"
        assert (await client.post(url, content=b"")).text == "ok"  # at once: the same one
        await asyncio.sleep(0.1)
        assert (await client.get(url)).text == "ok"  # a GET may reuse it
        await asyncio.sleep(0.1)
        assert (await client.post(url, content=b"")).text == "ok"  # idle too long: a new one
        assert pool_of(transport).idle_connections == 2  # the old one is kept for GETs
    assert len(ports) == 2
