"""One plain httpx client per event loop for every call of the fal provider.

fal-client wraps a second httpx client inside its transport (``AsyncBackupDomainTransport``),
so each of its calls passed through two clients and two connection pools; its status call
also retries by itself and asks for the logs. The client's pool runs on gateway/lean_http.py's
backend (a cheap idle-connection check). The provider speaks fal's queue protocol
directly instead: submit, status, result and cancel are single requests on this client,
with ``Authorization: Key <FAL_KEY>``; retries are the gateway's (its policy honours
``Retry-After``). What fal-client's transport did that is worth keeping is kept: a
connection to ``queue.fal.run`` (or ``fal.run``) that cannot be made is tried once on fal's
backup domain, with a connect timeout of at most ``BACKUP_CONNECT_TIMEOUT`` on those hosts.

A client is bound to the loop it was made on (its connections belong to that loop), so
there is one per running loop, made on first use.
"""

from __future__ import annotations

import asyncio
from typing import Any

import httpx

from gateway.lean_http import LeanClient, lean_transport

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
        self._clients: dict[asyncio.AbstractEventLoop, httpx.AsyncClient] = {}

    def client(self) -> httpx.AsyncClient:
        """The running loop's client (made on first use; clients of closed loops dropped)."""
        loop = asyncio.get_running_loop()
        client = self._clients.get(loop)
        if client is None:
            for other in [other for other in self._clients if other.is_closed()]:
                del self._clients[other]
            headers = {"User-Agent": USER_AGENT}
            if self._key:
                headers["Authorization"] = f"Key {self._key}"
            transport = lean_transport(limits=self._limits)
            client = LeanClient(headers=headers, transport=transport, trust_env=False)
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
        request = client.build_request(
            method,
            url,
            params=params,
            json=json,
            headers=headers,
            timeout=timeout,
            extensions=extensions,
        )
        if request.url.host in _MAPPED:
            limits = request.extensions["timeout"]
            limits["connect"] = min(limits.get("connect") or timeout, BACKUP_CONNECT_TIMEOUT)
        try:
            return await client.send(request)
        except (httpx.ConnectError, httpx.ConnectTimeout) as exc:
            backup = BACKUP_HOSTS.get(request.url.host)
            if backup is None:
                raise
            original, host = request.url, request.headers["Host"]
            request.url = request.url.copy_with(host=backup)
            request.headers["Host"] = request.url.netloc.decode("ascii")
            try:
                return await client.send(request)
            except (httpx.ConnectError, httpx.ConnectTimeout):
                request.url, request.headers["Host"] = original, host  # the host it named
                raise exc from None

    async def aclose(self) -> None:
        """Close this loop's client; forget the others (their loops are closed or own them)."""
        clients, self._clients = self._clients, {}
        client = clients.get(asyncio.get_running_loop())
        if client is not None:
            await client.aclose()
