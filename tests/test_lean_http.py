"""The lean transport (gateway/lean_http.py) against a real loopback server."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import httpx
import pytest

from gateway import lean_http
from gateway.lean_http import lean_transport


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


async def test_a_live_idle_connection_is_reused(monkeypatch: pytest.MonkeyPatch) -> None:
    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while await reader.readuntil(b"\r\n\r\n"):
                writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
                await writer.drain()
        except asyncio.IncompleteReadError:
            pass  # the client closed the connection
        finally:
            writer.close()
            await writer.wait_closed()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    checks: list[bool] = []
    real = lean_http._readable

    def counting(sock: object) -> bool:
        checks.append(real(sock))  # type: ignore[arg-type]
        return checks[-1]

    monkeypatch.setattr(lean_http, "_readable", counting)
    async with server, httpx.AsyncClient(transport=lean_transport(limits=httpx.Limits())) as c:
        for _ in range(3):
            assert (await c.get(f"http://127.0.0.1:{port}/")).text == "ok"
    assert checks and not any(checks)  # asked, and the connection was found alive
