"""httpcore's network layer on asyncio (gateway/lean_net.py), against real loopback servers."""

from __future__ import annotations

import asyncio
import datetime
import ipaddress
import socket
import ssl
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from gateway import lean_net
from tests.lean_support import lean_transport

OK = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"


async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, body: bytes) -> None:
    """Answers every request on the connection with ``body`` until the client closes it."""
    head = b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % len(body)
    try:
        while await reader.readuntil(b"\r\n\r\n"):
            writer.write(head + body)
            await writer.drain()
    except (asyncio.IncompleteReadError, ConnectionError):
        pass
    finally:
        writer.close()


@pytest.fixture
async def server() -> AsyncIterator[str]:
    listening = await asyncio.start_server(lambda r, w: answer(r, w, b"ok"), "127.0.0.1", 0)
    async with listening:
        yield f"http://127.0.0.1:{listening.sockets[0].getsockname()[1]}/"


def client(**limits: int) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=lean_transport(limits=httpx.Limits(**limits)))


def self_signed(tmp_path: Path) -> tuple[ssl.SSLContext, ssl.SSLContext]:
    """A server context with a certificate for 127.0.0.1, and a client context trusting it."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=1))
        .not_valid_after(now + datetime.timedelta(hours=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_pem = cert.public_bytes(serialization.Encoding.PEM)
    (tmp_path / "cert.pem").write_bytes(cert_pem)
    (tmp_path / "key.pem").write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    server_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_context.load_cert_chain(tmp_path / "cert.pem", tmp_path / "key.pem")
    client_context = ssl.create_default_context(cadata=cert_pem.decode())
    return server_context, client_context


async def test_requests_over_tls_are_answered_on_one_kept_connection(tmp_path: Path) -> None:
    server_context, client_context = self_signed(tmp_path)
    connections = 0

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal connections
        connections += 1
        await answer(reader, writer, b"secret")

    listening = await asyncio.start_server(handle, "127.0.0.1", 0, ssl=server_context)
    port = listening.sockets[0].getsockname()[1]
    transport = lean_transport(limits=httpx.Limits(), verify=client_context)
    async with listening, httpx.AsyncClient(transport=transport) as http:
        for _ in range(3):
            assert (await http.get(f"https://127.0.0.1:{port}/")).text == "secret"
    assert connections == 1


async def test_a_certificate_not_trusted_is_a_connect_error(tmp_path: Path) -> None:
    server_context, _ = self_signed(tmp_path)
    listening = await asyncio.start_server(
        lambda r, w: answer(r, w, b"x"), "127.0.0.1", 0, ssl=server_context
    )
    port = listening.sockets[0].getsockname()[1]
    async with listening, client() as http:
        with pytest.raises(httpx.ConnectError):
            await http.get(f"https://127.0.0.1:{port}/")


async def test_a_body_larger_than_the_read_buffer_arrives_whole() -> None:
    body = bytes(range(256)) * (5 * lean_net.HIGH_WATER // 256 + 3)
    listening = await asyncio.start_server(lambda r, w: answer(r, w, body), "127.0.0.1", 0)
    port = listening.sockets[0].getsockname()[1]
    received = bytearray()
    async with (
        listening,
        client() as http,
        http.stream("GET", f"http://127.0.0.1:{port}/") as response,
    ):
        async for chunk in response.aiter_raw():
            received += chunk
            await asyncio.sleep(0)  # slower than the server: reading is paused meanwhile
    assert received == body


async def test_a_server_that_does_not_answer_is_a_read_timeout() -> None:
    hung_up = asyncio.Event()

    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read()  # until the client gives up and closes the connection
        writer.close()
        hung_up.set()

    listening = await asyncio.start_server(silent, "127.0.0.1", 0)
    port = listening.sockets[0].getsockname()[1]
    async with listening, client() as http:
        with pytest.raises(httpx.ReadTimeout):
            await http.get(f"http://127.0.0.1:{port}/", timeout=0.2)
        await asyncio.wait_for(hung_up.wait(), 5)


async def test_a_port_nobody_listens_on_is_a_connect_error() -> None:
    with socket.socket() as unused:
        unused.bind(("127.0.0.1", 0))
        port = unused.getsockname()[1]
    async with client() as http:
        with pytest.raises(httpx.ConnectError):
            await http.get(f"http://127.0.0.1:{port}/")


async def test_a_host_name_is_resolved_and_its_addresses_tried(server: str) -> None:
    async with client() as http:
        assert (await http.get(server.replace("127.0.0.1", "localhost"))).text == "ok"


async def test_the_first_address_that_answers_wins_when_others_do_not() -> None:
    listening = await asyncio.start_server(lambda r, w: answer(r, w, b"ok"), "127.0.0.1", 0)
    port = listening.sockets[0].getsockname()[1]
    with socket.socket() as unused:
        unused.bind(("127.0.0.2", 0))
        dead = unused.getsockname()[1]
    infos = [
        (socket.AF_INET, socket.SOCK_STREAM, 6, "", ("127.0.0.2", dead)),  # refused
        (socket.AF_INET, socket.SOCK_STREAM, 6, "", ("127.0.0.1", port)),
    ]
    loop = asyncio.get_running_loop()

    async def resolve(*args: object, **kwargs: object) -> list[tuple[object, ...]]:
        return list(infos)

    async with listening:
        original, loop.getaddrinfo = loop.getaddrinfo, resolve  # type: ignore[method-assign]
        try:
            sock = await lean_net._connected(loop, "two.example", port, None)
        finally:
            loop.getaddrinfo = original  # type: ignore[method-assign]
        with sock:
            assert sock.getpeername() == ("127.0.0.1", port)


def test_addresses_alternate_between_families_the_first_family_first() -> None:
    def info(family: int, host: str) -> tuple[object, ...]:
        return (family, socket.SOCK_STREAM, 6, "", (host, 443))

    v6a, v6b = info(socket.AF_INET6, "::1"), info(socket.AF_INET6, "::2")
    v4a, v4b = info(socket.AF_INET, "10.0.0.1"), info(socket.AF_INET, "10.0.0.2")
    assert lean_net._ordered([v6a, v6b, v4a, v4b]) == [v6a, v4a, v6b, v4b]


async def test_an_idle_connection_the_server_closed_reads_as_readable_at_once() -> None:
    async def once(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(OK)
        await writer.drain()
        writer.close()  # keep-alive offered, then the server goes

    listening = await asyncio.start_server(once, "127.0.0.1", 0)
    port = listening.sockets[0].getsockname()[1]
    async with listening:
        stream = await lean_net.AsyncioBackend().connect_tcp("127.0.0.1", port, timeout=5)
        try:
            assert stream.get_extra_info("is_readable") is False
            await stream.write(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
            assert await stream.read(100, timeout=5) == OK
            for _ in range(100):  # the close arrives: known without asking the socket
                if stream.get_extra_info("is_readable"):
                    break
                await asyncio.sleep(0.01)
            assert stream.get_extra_info("is_readable") is True
            assert await stream.read(100, timeout=5) == b""
        finally:
            await stream.aclose()
