"""The one way the gateway fetches a URL it was given: input images, provider outputs.

``fetch_guarded`` puts every hop through the SSRF guard (``gateway.netguard``): http/https
only, the host resolved once and every address checked, then the connection made to a checked
address (``netguard.pinned``), never to the name again. Redirects are followed by hand (at
most ``max_redirects``), each new hop checked the same way. The body is streamed with a byte
limit, and the whole fetch (every hop) has one time limit.

A host the allow-list names (``hooks.internal``, ``*.corp.example``) is trusted whatever it
resolves to, so it is connected to by name (pinning would protect nothing); an address or
network in the allow-list only exempts those addresses.

Refusals raise the guard's own errors (``UnsafeURL``, ``UnresolvableHost``, ``InvalidRequest``);
every other failure raises ``FetchFailed`` with a ``reason``. Callers turn both into the error
classes of their own seam. Messages name the host, never the whole URL (it may hold a token).
"""

from __future__ import annotations

import asyncio
import functools
import ssl
from collections.abc import Sequence
from typing import Any, Literal

import httpx

from gateway import netguard
from gateway.digits import parse_digits
from gateway.errors import UnsafeURL

__all__ = ["MAX_ADDRESSES", "MAX_REDIRECTS", "FetchFailed", "fetch_guarded"]

MAX_REDIRECTS = 3
MAX_ADDRESSES = 3  # addresses tried in turn when a connection is refused
USER_AGENT = "Back.Serv-Fetch/1"

Reason = Literal["status", "too_large", "timeout", "network", "content_type", "redirects"]


@functools.cache
def tls_context() -> ssl.SSLContext:
    """One TLS context for every fetch: building one loads the CA bundle, about 60 ms of CPU
    on the event loop, which a client per fetch used to pay for each download."""
    return httpx.create_ssl_context()


class FetchFailed(Exception):
    """The fetch was allowed but did not bring back an acceptable body."""

    def __init__(self, reason: Reason, message: str, *, status: int | None = None) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message
        self.status = status


async def fetch_guarded(
    url: str,
    *,
    allow: netguard.AllowList,
    max_bytes: int,
    timeout: float,
    accept: Sequence[str] | None = None,
    default_type: str = "application/octet-stream",
    param: str = "url",
    max_redirects: int = MAX_REDIRECTS,
    transport: httpx.AsyncBaseTransport | None = None,
) -> tuple[bytes, str]:
    """The body behind ``url`` and its media type (``default_type`` when none is sent).

    ``accept``: media type prefixes (``"image/"``) the response must have, or None for any.
    """
    first = netguard.parse_url(url, param=param)
    host = first.host or "?"
    try:
        async with (
            asyncio.timeout(timeout),
            httpx.AsyncClient(
                follow_redirects=False,
                trust_env=False,  # a proxy would connect by name, bypassing the pinned address
                timeout=httpx.Timeout(timeout),
                transport=transport,
                verify=tls_context(),
            ) as client,
        ):
            return await _follow(
                client, first, allow, max_bytes, accept, default_type, param, max_redirects
            )
    except TimeoutError:
        raise FetchFailed(
            "timeout", f"no complete answer from {host} within {timeout:g} s"
        ) from None
    except httpx.TimeoutException as exc:
        raise FetchFailed("timeout", f"{host} timed out ({type(exc).__name__})") from exc
    except httpx.HTTPError as exc:
        raise FetchFailed("network", f"could not fetch from {host} ({type(exc).__name__})") from exc


async def _follow(
    client: httpx.AsyncClient,
    url: httpx.URL,
    allow: netguard.AllowList,
    max_bytes: int,
    accept: Sequence[str] | None,
    default_type: str,
    param: str,
    max_redirects: int,
) -> tuple[bytes, str]:
    for hop in range(max_redirects + 1):
        response = await _open(client, url, allow, param, redirected=hop > 0)
        try:
            if response.has_redirect_location:
                location = response.headers["location"]
                url = netguard.parse_url(str(url.join(location)), param=param)
                continue
            return await _read(response, url, max_bytes, accept, default_type)
        finally:
            await response.aclose()
    raise FetchFailed("redirects", f"more than {max_redirects} redirects from {url.host}")


async def _open(
    client: httpx.AsyncClient,
    url: httpx.URL,
    allow: netguard.AllowList,
    param: str,
    *,
    redirected: bool,
) -> httpx.Response:
    """The response (headers read, body not) of one GET of ``url``, through the guard."""
    headers: dict[str, str] = {"user-agent": USER_AGENT}
    if allow.permits_host(url.raw_host.decode("ascii")):
        targets: list[tuple[httpx.URL, dict[str, str], dict[str, Any]]] = [(url, {}, {})]
    else:
        try:
            addresses = await netguard.check_url(url, allow, param=param)
        except UnsafeURL as exc:
            if not redirected:
                raise
            raise UnsafeURL(f"'{param}' redirected: {exc.message}", param=param) from None
        targets = [netguard.pinned(url, a) for a in addresses[:MAX_ADDRESSES]]
    error: httpx.HTTPError | None = None
    for target, pin_headers, extensions in targets:
        request = client.build_request(
            "GET", target, headers=headers | pin_headers, extensions=extensions
        )
        try:
            return await client.send(request, stream=True)
        except (httpx.ConnectError, httpx.ConnectTimeout) as exc:
            error = exc
    assert error is not None
    raise error


async def _read(
    response: httpx.Response,
    url: httpx.URL,
    max_bytes: int,
    accept: Sequence[str] | None,
    default_type: str,
) -> tuple[bytes, str]:
    host = url.host or "?"
    if not response.is_success:
        raise FetchFailed(
            "status",
            f"fetching from {host} failed with HTTP {response.status_code}",
            status=response.status_code,
        )
    content_type = response.headers.get("content-type", default_type).split(";")[0].strip()
    content_type = content_type.lower() or default_type
    if accept is not None and not content_type.startswith(tuple(accept)):
        raise FetchFailed("content_type", f"{host} answered content type '{content_type}'")
    too_large = f"the body from {host} is larger than {max_bytes} bytes"
    declared = parse_digits(response.headers.get("content-length", ""))
    if declared is not None and declared > max_bytes:
        raise FetchFailed("too_large", too_large)
    body = bytearray()
    async for chunk in response.aiter_bytes():
        body += chunk
        if len(body) > max_bytes:
            raise FetchFailed("too_large", too_large)
    return bytes(body), content_type
