"""httpx's transport over the gateway's connection pool, to drive the pool (and the
connections under it) with httpx's whole API in tests; the gateway itself calls the pool
through gateway/lean_client.py."""

from __future__ import annotations

import ssl

import httpx

from gateway.lean_net import AsyncioBackend
from gateway.lean_pool import LeanPool


def lean_transport(
    *, limits: httpx.Limits, verify: ssl.SSLContext | bool = True
) -> httpx.AsyncHTTPTransport:
    """httpx's transport with its (unused) httpcore pool replaced by a ``LeanPool``."""
    context = verify if isinstance(verify, ssl.SSLContext) else httpx.create_ssl_context(verify)
    transport = httpx.AsyncHTTPTransport(verify=context, trust_env=False, limits=limits)
    transport._pool = LeanPool(  # type: ignore[assignment]
        ssl_context=context,
        network_backend=AsyncioBackend(),
        max_connections=limits.max_connections,
        max_keepalive_connections=limits.max_keepalive_connections,
        keepalive_expiry=limits.keepalive_expiry,
    )
    return transport


def pool_of(transport: httpx.AsyncHTTPTransport) -> LeanPool:
    pool = transport._pool
    assert isinstance(pool, LeanPool)
    return pool
