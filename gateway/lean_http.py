"""A leaner transport under httpx for the gateway's long-lived outgoing clients.

httpx's client and transport are kept (their API, their error mapping, respx), with
httpcore's connection pool and h11 under them replaced by gateway/lean_pool.py's
``LeanPool`` (HTTP/1.1 through httptools, gateway/http1.py) on gateway/lean_net.py's
connections (asyncio's own transports, not anyio's). respx mocks httpcore's pool classes by
default; tests add ``LeanPool`` to its targets (tests/conftest.py).

``LeanClient`` is httpx's client keeping no cookies: httpx reads every answer's cookies
into its jar through ``http.cookiejar`` (about 5% of a request's CPU), and would send what a
CDN set with the next download from it, another job's. The gateway's provider calls and
downloads use none.

``lean_transport()`` is httpx's own transport with its connection pool replaced by a
``LeanPool`` on that backend: httpx has no argument for a network backend or a pool, so the
pool it made, still unused, is replaced.
"""

from __future__ import annotations

import ssl
from typing import Any

import httpcore
import httpx

from gateway.lean_net import AsyncioBackend
from gateway.lean_pool import LeanPool

__all__ = ["LeanClient", "LeanPool", "lean_transport"]


class _NoCookies(httpx.Cookies):
    """A jar that keeps nothing an answer sets (and so sends nothing)."""

    def extract_cookies(self, response: httpx.Response) -> None:
        return None


class LeanClient(httpx.AsyncClient):
    """httpx's client, its cookies never kept (see above)."""

    def __init__(self, **kwargs: Any) -> None:
        if kwargs.get("cookies"):
            raise ValueError("a LeanClient sends no cookies")
        super().__init__(**kwargs)
        self._no_cookies = _NoCookies()

    @property
    def cookies(self) -> httpx.Cookies:
        return self._no_cookies

    @cookies.setter
    def cookies(self, cookies: Any) -> None:
        raise ValueError("a LeanClient sends no cookies")


def lean_transport(
    *,
    limits: httpx.Limits,
    verify: ssl.SSLContext | bool = True,
    backend: httpcore.AsyncNetworkBackend | None = None,
) -> httpx.AsyncHTTPTransport:
    """httpx's transport over a ``LeanPool`` on ``backend`` (an ``AsyncioBackend`` by
    default); never through a proxy from the environment (``trust_env`` off)."""
    context = verify if isinstance(verify, ssl.SSLContext) else httpx.create_ssl_context(verify)
    transport = httpx.AsyncHTTPTransport(verify=context, trust_env=False, limits=limits)
    transport._pool = LeanPool(  # type: ignore[assignment]
        ssl_context=context,
        max_connections=limits.max_connections,
        max_keepalive_connections=limits.max_keepalive_connections,
        keepalive_expiry=limits.keepalive_expiry,
        network_backend=backend or AsyncioBackend(),
    )
    return transport
