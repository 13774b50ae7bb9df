"""A leaner transport under httpx for the gateway's long-lived outgoing clients.

httpcore's pool walks its connections at the start and end of every request and asks each
idle one whether the server closed it (``get_extra_info("is_readable")``). Its anyio streams
answer that by building anyio's whole dict of socket attributes first; with a few dozen idle
connections that was a fifth of the CPU of a fal status call. ``LeanBackend`` wraps anyio's
backend and keeps each connection's socket at hand, so the check is one ``poll`` of it.

``lean_transport()`` is httpx's own transport (its API, its error mapping, respx-mockable)
with its connection pool built on such a backend: httpx has no argument for a network
backend, so the pool it made, still unused, is replaced.
"""

from __future__ import annotations

import select
import socket
import ssl
from collections.abc import Iterable
from typing import Any

import httpcore
import httpx

__all__ = ["LeanBackend", "lean_transport"]


def _readable(sock: socket.socket | None) -> bool:
    """Whether a read would not block: data, or the peer's close (a gone socket counts)."""
    if sock is None or sock.fileno() < 0:
        return True
    poller = select.poll()
    poller.register(sock, select.POLLIN)
    return bool(poller.poll(0))


class _Stream(httpcore.AsyncNetworkStream):
    """An httpcore stream whose socket is looked up once, when it is made."""

    def __init__(self, inner: httpcore.AsyncNetworkStream) -> None:
        self._inner = inner
        self._socket: socket.socket | None = inner.get_extra_info("socket")

    async def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        return await self._inner.read(max_bytes, timeout)

    async def write(self, buffer: bytes, timeout: float | None = None) -> None:
        await self._inner.write(buffer, timeout)

    async def aclose(self) -> None:
        await self._inner.aclose()

    async def start_tls(
        self,
        ssl_context: ssl.SSLContext,
        server_hostname: str | None = None,
        timeout: float | None = None,
    ) -> httpcore.AsyncNetworkStream:
        return _Stream(await self._inner.start_tls(ssl_context, server_hostname, timeout))

    def get_extra_info(self, info: str) -> Any:
        if info == "is_readable":
            return _readable(self._socket)
        if info == "socket":
            return self._socket
        return self._inner.get_extra_info(info)


class LeanBackend(httpcore.AsyncNetworkBackend):
    """anyio's backend, its streams wrapped so the pool's idle check is cheap."""

    def __init__(self) -> None:
        self._inner = httpcore.AnyIOBackend()

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        stream = await self._inner.connect_tcp(host, port, timeout, local_address, socket_options)
        return _Stream(stream)

    async def connect_unix_socket(
        self,
        path: str,
        timeout: float | None = None,
        socket_options: Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        return _Stream(await self._inner.connect_unix_socket(path, timeout, socket_options))

    async def sleep(self, seconds: float) -> None:
        await self._inner.sleep(seconds)


def lean_transport(
    *,
    limits: httpx.Limits,
    verify: ssl.SSLContext | bool = True,
    backend: httpcore.AsyncNetworkBackend | None = None,
) -> httpx.AsyncHTTPTransport:
    """httpx's transport over a pool on ``backend`` (a ``LeanBackend`` by default); never
    through a proxy from the environment (``trust_env`` off)."""
    context = verify if isinstance(verify, ssl.SSLContext) else httpx.create_ssl_context(verify)
    transport = httpx.AsyncHTTPTransport(verify=context, trust_env=False, limits=limits)
    transport._pool = httpcore.AsyncConnectionPool(
        ssl_context=context,
        max_connections=limits.max_connections,
        max_keepalive_connections=limits.max_keepalive_connections,
        keepalive_expiry=limits.keepalive_expiry,
        network_backend=backend or LeanBackend(),
    )
    return transport
