"""httpcore's network layer on asyncio itself, for the gateway's long-lived outgoing clients.

httpcore reaches the network through a backend (``connect_tcp``) and the streams it returns
(``read``, ``write``, ``start_tls``). Its default goes through anyio: every read and write
enters a cancel scope, takes a guard lock and yields to the event loop once (a checkpoint)
before it touches the socket; a read also resumes and pauses the transport's reading. On
the gateway's hot path (a provider call, an output download) that was about a fifth of the
client's CPU. ``AsyncioBackend`` connects with the running loop's own transports and
``AsyncioStream`` reads from what its protocol already received and writes straight to the
transport, waiting only when it must (nothing received yet; the kernel's buffer full).

What anyio gave that is kept: a host name is resolved by the loop and its addresses tried
in the RFC 8305 order, a new one started every ``HAPPY_EYEBALLS_DELAY`` while earlier ones
are still connecting (asyncio's own ``staggered_race``); every call honours httpcore's
timeout and raises httpcore's errors (``ConnectError``, ``ReadTimeout``, ...). Reading is
paused past ``HIGH_WATER`` bytes not yet read (back-pressure, as a socket would give).

Because the protocol keeps reading while a connection is idle, it knows when the server
closed it or sent something unasked: ``get_extra_info("is_readable")``, httpcore's check
before it reuses a connection, costs no system call.
"""

from __future__ import annotations

import asyncio
import functools
import ipaddress
import socket
import ssl
from asyncio import staggered
from collections import deque
from collections.abc import Iterable
from typing import Any, cast

import httpcore

__all__ = ["AsyncioBackend", "AsyncioStream"]

HAPPY_EYEBALLS_DELAY = 0.25
HIGH_WATER = 256 * 1024
LOW_WATER = 64 * 1024


class _Protocol(asyncio.Protocol):
    """Keeps what the transport received until the stream reads it."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.chunks: deque[bytes] = deque()
        self.size = 0
        self.eof = False
        self.error: Exception | None = None
        self.reading_paused = False
        self._readable: asyncio.Future[None] | None = None
        self._writable: asyncio.Future[None] | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's is not a subclass

    def data_received(self, data: bytes) -> None:
        self.chunks.append(data)
        self.size += len(data)
        if self.size > HIGH_WATER and not self.reading_paused and self.transport is not None:
            self.reading_paused = True
            self.transport.pause_reading()
        _wake(self._readable)

    def eof_received(self) -> bool:
        self.eof = True
        _wake(self._readable)
        return False  # the transport closes itself

    def connection_lost(self, exc: Exception | None) -> None:
        self.eof = True
        self.error = exc
        _wake(self._readable)
        _wake(self._writable)

    def pause_writing(self) -> None:
        if self._writable is None or self._writable.done():
            self._writable = asyncio.get_running_loop().create_future()

    def resume_writing(self) -> None:
        _wake(self._writable)

    def take(self, max_bytes: int) -> bytes:
        chunk = self.chunks.popleft()
        if len(chunk) > max_bytes:
            self.chunks.appendleft(chunk[max_bytes:])
            chunk = chunk[:max_bytes]
        self.size -= len(chunk)
        if self.reading_paused and self.size <= LOW_WATER and self.transport is not None:
            self.reading_paused = False
            self.transport.resume_reading()
        return chunk

    async def received(self) -> None:
        """Until something was received, the end of the stream or an error."""
        if self.chunks or self.eof:
            return
        waiter = self._readable = asyncio.get_running_loop().create_future()
        try:
            await waiter
        finally:
            self._readable = None

    async def drained(self) -> None:
        """Until the transport takes more (it paused writing), or the connection is lost."""
        waiter = self._writable
        if waiter is not None and not waiter.done() and self.error is None and not self.eof:
            await asyncio.shield(waiter)


def _wake(waiter: asyncio.Future[None] | None) -> None:
    if waiter is not None and not waiter.done():
        waiter.set_result(None)


class AsyncioStream(httpcore.AsyncNetworkStream):
    """One connection: an asyncio transport and the protocol that buffers what it reads."""

    def __init__(self, transport: asyncio.Transport, protocol: _Protocol) -> None:
        self._transport = transport
        self._protocol = protocol

    async def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        protocol = self._protocol
        if not protocol.chunks and not protocol.eof:
            try:
                async with asyncio.timeout(timeout):
                    await protocol.received()
            except TimeoutError:
                raise httpcore.ReadTimeout("no data received in time") from None
        if protocol.chunks:
            return protocol.take(max_bytes)
        if protocol.error is not None:
            raise httpcore.ReadError(str(protocol.error)) from protocol.error
        return b""

    async def write(self, buffer: bytes, timeout: float | None = None) -> None:
        if not buffer:
            return
        protocol = self._protocol
        if self._transport.is_closing():
            raise httpcore.WriteError(str(protocol.error or "the connection is closed"))
        try:
            self._transport.write(buffer)
        except (OSError, RuntimeError) as exc:
            raise httpcore.WriteError(str(exc)) from exc
        if protocol._writable is not None and not protocol._writable.done():
            try:
                async with asyncio.timeout(timeout):
                    await protocol.drained()
            except TimeoutError:
                raise httpcore.WriteTimeout("the data could not be sent in time") from None
        if protocol.error is not None:
            raise httpcore.WriteError(str(protocol.error)) from protocol.error

    async def aclose(self) -> None:
        self._transport.close()

    def close(self) -> None:
        """Close at once: an asyncio transport does not wait to close."""
        self._transport.close()

    async def start_tls(
        self,
        ssl_context: ssl.SSLContext,
        server_hostname: str | None = None,
        timeout: float | None = None,
    ) -> httpcore.AsyncNetworkStream:
        loop = asyncio.get_running_loop()
        try:
            async with asyncio.timeout(timeout):
                transport = await loop.start_tls(
                    self._transport, self._protocol, ssl_context, server_hostname=server_hostname
                )
        except TimeoutError:
            self._transport.close()
            raise httpcore.ConnectTimeout("the TLS handshake did not finish in time") from None
        except (OSError, ssl.SSLError) as exc:
            self._transport.close()
            raise httpcore.ConnectError(str(exc)) from exc
        if transport is None:
            raise httpcore.ConnectError("the connection closed during the TLS handshake")
        self._protocol.transport = transport
        return AsyncioStream(transport, self._protocol)

    def get_extra_info(self, info: str) -> Any:
        if info == "is_readable":
            protocol = self._protocol
            return bool(protocol.chunks) or protocol.eof or self._transport.is_closing()
        if info == "ssl_object":
            return self._transport.get_extra_info("ssl_object")
        if info == "client_addr":
            return self._transport.get_extra_info("sockname")
        if info == "server_addr":
            return self._transport.get_extra_info("peername")
        if info == "socket":
            return self._transport.get_extra_info("socket")
        return None


class AsyncioBackend(httpcore.AsyncNetworkBackend):
    """Connections made by the running loop, as ``AsyncioStream``s."""

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        loop = asyncio.get_running_loop()
        try:
            async with asyncio.timeout(timeout):
                sock = await _connected(loop, host, port, local_address)
        except TimeoutError:
            raise httpcore.ConnectTimeout(f"no connection to {host}:{port} in time") from None
        except OSError as exc:
            raise httpcore.ConnectError(str(exc)) from exc
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            for option in socket_options or ():
                sock.setsockopt(*option)
            transport, protocol = await loop.create_connection(_Protocol, sock=sock)
        except OSError as exc:
            sock.close()
            raise httpcore.ConnectError(str(exc)) from exc
        return AsyncioStream(transport, protocol)

    async def connect_unix_socket(
        self,
        path: str,
        timeout: float | None = None,
        socket_options: Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        loop = asyncio.get_running_loop()
        try:
            async with asyncio.timeout(timeout):
                transport, protocol = await loop.create_unix_connection(_Protocol, path)
        except TimeoutError:
            raise httpcore.ConnectTimeout(f"no connection to {path} in time") from None
        except OSError as exc:
            raise httpcore.ConnectError(str(exc)) from exc
        return AsyncioStream(transport, protocol)

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(seconds)


async def _connected(
    loop: asyncio.AbstractEventLoop, host: str, port: int, local_address: str | None
) -> socket.socket:
    """A socket connected to ``host`` (a name: its addresses raced, staggered)."""
    infos: list[tuple[Any, ...]]
    try:
        ipaddress.ip_address(host)  # an address: nothing to look up
        infos = list(
            socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_NUMERICHOST)
        )
    except ValueError:
        infos = list(await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM))
    if not infos:
        raise OSError(f"{host} has no address")
    attempts = [functools.partial(_attempt, loop, info, local_address) for info in _ordered(infos)]
    if len(attempts) == 1:
        return await attempts[0]()
    sock, _, errors = await staggered.staggered_race(attempts, HAPPY_EYEBALLS_DELAY)
    if sock is None:
        raise next((e for e in errors if e is not None), OSError(f"no address of {host} answered"))
    return cast(socket.socket, sock)


async def _attempt(
    loop: asyncio.AbstractEventLoop, info: tuple[Any, ...], local_address: str | None
) -> socket.socket:
    family, kind, proto, _, address = info
    sock = socket.socket(family, kind, proto)
    try:
        sock.setblocking(False)
        if local_address:
            sock.bind((local_address, 0))
        await loop.sock_connect(sock, address)
    except BaseException:
        sock.close()
        raise
    return sock


def _ordered(infos: list[tuple[Any, ...]]) -> list[tuple[Any, ...]]:
    """Addresses alternating between families, the first family first (RFC 8305)."""
    families: dict[int, deque[tuple[Any, ...]]] = {}
    for info in infos:
        families.setdefault(info[0], deque()).append(info)
    ordered: list[tuple[Any, ...]] = []
    while any(families.values()):
        for queue in families.values():
            if queue:
                ordered.append(queue.popleft())
    return ordered
