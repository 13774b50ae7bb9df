"""One lean HTTP client per event loop for every call of the fal provider.

fal-client wraps a second httpx client inside its transport (``AsyncBackupDomainTransport``),
so each of its calls passed through two clients and two connection pools; its status call
also retries by itself and asks for the logs. The provider speaks fal's queue protocol
directly instead: submit, status, result and cancel are single requests on this client
(gateway/lean_client.py: httpx's answers and errors, without httpx's client around them),
with ``Authorization: Key <FAL_KEY>``; retries are the gateway's (its policy honours
``Retry-After``). What fal-client's transport did that is worth keeping is kept: a
connection to ``queue.fal.run`` (or ``fal.run``) that cannot be made is tried once on fal's
backup domain, with a connect timeout of at most ``BACKUP_CONNECT_TIMEOUT`` on those hosts.

A client is bound to the loop it was made on (its connections belong to that loop), so
there is one per running loop, made on first use.
"""

from __future__ import annotations

import asyncio
import functools
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import httpx

from gateway.lean_client import LeanHttpClient

__all__ = ["BACKUP_HOSTS", "FalHttp"]

#: fal's hosts and their backup domains (as fal-client 1.0.3 maps them)
BACKUP_HOSTS = {"queue.fal.run": "queue.falrun.com", "fal.run": "falrun.com"}
BACKUP_CONNECT_TIMEOUT = 5.0
USER_AGENT = "Back.Serv (fal queue)"
_MAPPED = frozenset(BACKUP_HOSTS) | frozenset(BACKUP_HOSTS.values())


class FalHttp:
    """The fal provider's HTTP client, one per running event loop."""

    def __init__(self, key: str | None, *, max_connections: int) -> None:
        self._key = key
        self._limits = httpx.Limits(
            max_connections=max_connections,
            max_keepalive_connections=max_connections,
            keepalive_expiry=30.0,
        )
        self._clients: dict[asyncio.AbstractEventLoop, LeanHttpClient] = {}

    def client(self) -> LeanHttpClient:
        """The running loop's client (made on first use; clients of closed loops dropped)."""
        loop = asyncio.get_running_loop()
        client = self._clients.get(loop)
        if client is None:
            for other in [other for other in self._clients if other.is_closed()]:
                del self._clients[other]
            headers = {"User-Agent": USER_AGENT}
            if self._key:
                headers["Authorization"] = f"Key {self._key}"
            client = LeanHttpClient(limits=self._limits, headers=headers)
            self._clients[loop] = client
        return client

    async def send(
        self,
        method: str,
        url: str,
        *,
        timeout: float,
        params: dict[str, str] | None = None,
        json: Any = None,
        headers: dict[str, str] | None = None,
        extensions: dict[str, Any] | None = None,
    ) -> httpx.Response:
        """One request (the body read); on a fal host it could not connect to, once more on
        fal's backup domain. Transport errors are httpx's own."""
        client = self.client()
        host = urlsplit(url).hostname or ""
        connect = min(timeout, BACKUP_CONNECT_TIMEOUT) if host in _MAPPED else None
        call = functools.partial(
            client.request,
            method,
            timeout=timeout,
            connect_timeout=connect,
            params=params,
            json=json,
            headers=headers,
            extensions=extensions,
        )
        try:
            return await call(url)
        except (httpx.ConnectError, httpx.ConnectTimeout) as exc:
            backup = BACKUP_HOSTS.get(host)
            if backup is None:
                raise
            try:
                return await call(_with_host(url, backup))
            except (httpx.ConnectError, httpx.ConnectTimeout):
                raise exc from None  # the host it named

    async def aclose(self) -> None:
        """Close this loop's client; forget the others (their loops are closed or own them)."""
        clients, self._clients = self._clients, {}
        client = clients.get(asyncio.get_running_loop())
        if client is not None:
            await client.aclose()


def _with_host(url: str, host: str) -> str:
    """``url`` on another host (its port, path and query kept)."""
    parts = urlsplit(url)
    netloc = host if parts.port is None else f"{host}:{parts.port}"
    return urlunsplit(parts._replace(netloc=netloc))
