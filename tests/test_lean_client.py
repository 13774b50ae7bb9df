"""The lean client for provider calls (gateway/lean_client.py) against loopback servers."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator

import httpx
import pytest

from gateway.lean_client import LeanHttpClient, tls_context

Seen = list[bytes]


@pytest.fixture
async def echo() -> AsyncIterator[tuple[str, Seen]]:
    """Answers every request with 200 and a JSON body; records each request's head and body."""
    seen: Seen = []

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while head := await reader.readuntil(b"\r\n\r\n"):
                length = 0
                for line in head.split(b"\r\n"):
                    if line.lower().startswith(b"content-length:"):
                        length = int(line.split(b":")[1])
                seen.append(head + await reader.readexactly(length))
                body = b'{"ok": true}'
                writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body))
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    async with server:
        yield f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}", seen


def _client(**headers: str) -> LeanHttpClient:
    return LeanHttpClient(limits=httpx.Limits(max_connections=4), headers=headers)


async def test_a_json_post_goes_out_with_its_headers_params_and_body(
    echo: tuple[str, Seen],
) -> None:
    url, seen = echo
    client = _client(Authorization="Key k")
    try:
        answer = await client.request(
            "POST",
            f"{url}/fal-ai/app?x=1",
            timeout=5,
            params={"fal_webhook": "https://gw.example/hooks/fal?job=a b"},
            json={"prompt": "a lighthouse"},
            headers={"X-Job": "j1"},
        )
    finally:
        await client.aclose()
    assert (answer.status_code, answer.json()) == (200, {"ok": True})
    [request] = seen
    head, body = request.split(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    assert lines[0] == (
        b"POST /fal-ai/app?x=1&fal_webhook=https%3A%2F%2Fgw.example%2Fhooks%2Ffal%3Fjob%3Da+b"
        b" HTTP/1.1"
    )
    assert {b"authorization: Key k", b"x-job: j1", b"content-type: application/json"} <= set(lines)
    assert f"host: {url.removeprefix('http://')}".encode() in lines
    assert body == b'{"prompt":"a lighthouse"}'


async def test_a_path_with_spaces_and_unicode_is_percent_encoded(echo: tuple[str, Seen]) -> None:
    url, seen = echo
    client = _client()
    try:
        await client.request("GET", f"{url}/requests/a b/é", timeout=5)
    finally:
        await client.aclose()
    assert seen[0].startswith(b"GET /requests/a%20b/%C3%A9 HTTP/1.1\r\n")


async def test_a_refused_connection_is_httpx_connect_error_naming_the_request() -> None:
    listener = await asyncio.start_server(lambda r, w: None, "127.0.0.1", 0)
    port = listener.sockets[0].getsockname()[1]
    listener.close()
    await listener.wait_closed()
    client = _client()
    try:
        with pytest.raises(httpx.ConnectError) as caught:
            await client.request("GET", f"http://127.0.0.1:{port}/status", timeout=5)
    finally:
        await client.aclose()
    assert caught.value.request.url.port == port


@pytest.mark.parametrize(
    ("url", "error"),
    [
        ("ftp://example.com/x", httpx.UnsupportedProtocol),
        ("http:///nohost", httpx.InvalidURL),
        ("http://example.com:99999/x", httpx.InvalidURL),
    ],
)
async def test_a_url_it_cannot_send_to_is_httpx_error(url: str, error: type[Exception]) -> None:
    client = _client()
    try:
        with pytest.raises(error):
            await client.request("GET", url, timeout=5)
    finally:
        await client.aclose()


async def test_an_answer_past_the_size_limit_is_refused() -> None:
    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 5000\r\n\r\n" + b"x" * 5000)
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    url = f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}/"
    client = LeanHttpClient(limits=httpx.Limits(), max_bytes=1000)
    async with server:
        try:
            with pytest.raises(httpx.RemoteProtocolError, match="larger than 1000 bytes"):
                await client.request("GET", url, timeout=5)
        finally:
            await client.aclose()


async def test_a_closed_client_refuses_requests() -> None:
    client = _client()
    await client.aclose()
    assert client.is_closed
    with pytest.raises(RuntimeError, match="closed"):
        await client.request("GET", "http://127.0.0.1:1/", timeout=1)


async def test_each_request_is_logged_once_without_its_query(
    echo: tuple[str, Seen], caplog: pytest.LogCaptureFixture
) -> None:
    url, _ = echo
    caplog.set_level(logging.INFO, logger="backserv.http")
    client = _client()
    try:
        await client.request("POST", f"{url}/app?token=secret", timeout=5, json={})
    finally:
        await client.aclose()
    [line] = [r.getMessage() for r in caplog.records if r.name == "backserv.http"]
    assert line == f'HTTP Request: POST {url}/app "HTTP/1.1 200 OK"'


def test_every_client_shares_the_one_tls_context() -> None:
    first = LeanHttpClient(limits=httpx.Limits())
    second = LeanHttpClient(limits=httpx.Limits())
    assert first.pool._ssl_context is second.pool._ssl_context is tls_context()
