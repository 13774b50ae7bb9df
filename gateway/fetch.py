"""The one way the gateway fetches a URL it was given: input images, provider outputs.

``fetch_guarded`` puts every hop through the SSRF guard (``gateway.netguard``): http/https
only, the host resolved once and every address checked, then the connection made to a checked
address, never to the name again. Redirects are followed by hand (at most ``max_redirects``),
each new hop checked the same way. The body is streamed with a byte limit, and the whole
fetch (every hop) has one time limit.

**One long-lived client.** A ``GuardedFetcher`` keeps one client (gateway/lean_client.py:
httpx's answers on the gateway's own connection pool) per allow-list for every fetch, so a
download pays no client, pool or TLS set-up; the owner closes it with ``aclose()``. Without
one, ``fetch_guarded`` builds a fetcher for the call and closes it after. The pool is keyed
by the URL's host name, so TLS (SNI, certificate checks) and the Host header see the name,
while the connection itself is made by a network backend that only ever connects to the
addresses the guard checked for that request: the check hands them over in a context
variable, and a connection attempt without them is refused. A pooled connection was made to
a checked address, under the same allow-list (a fetcher keeps one pool per allow-list), so
reusing it never reaches an address the guard would refuse; a host that now resolves to a
refused address is refused before any request.

A host the allow-list names (``hooks.internal``, ``*.corp.example``) is trusted whatever it
resolves to, so it is connected to by name (pinning would protect nothing); an address or
network in the allow-list only exempts those addresses.

Refusals raise the guard's own errors (``UnsafeURL``, ``UnresolvableHost``, ``InvalidRequest``);
every other failure raises ``FetchFailed`` with a ``reason``. Callers turn both into the error
classes of their own seam. Messages name the host, never the whole URL (it may hold a token).
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import typing
from collections.abc import AsyncGenerator, AsyncIterator, Iterable, Sequence
from typing import Final, Literal

import httpcore
import httpx

from gateway import netguard
from gateway.digits import parse_digits
from gateway.errors import UnsafeURL
from gateway.lean_client import LeanHttpClient, tls_context
from gateway.lean_net import AsyncioBackend

__all__ = [
    "MAX_ADDRESSES",
    "MAX_REDIRECTS",
    "Body",
    "FetchFailed",
    "FetchLimits",
    "GuardedFetcher",
    "fetch_guarded",
]

MAX_ADDRESSES = 3  # addresses tried in turn when a connection is refused
MAX_REDIRECTS = 3
USER_AGENT = "Back.Serv-Fetch/1"
#: connections a fetcher keeps per allow-list (and fetches it runs at once: more wait their
#: turn in an asyncio semaphore, not in httpcore's pool, which walks every queued request on
#: each start and end); idle ones are kept for reuse and closed after KEEPALIVE seconds
MAX_CONNECTIONS = 64
MAX_IDLE = MAX_CONNECTIONS
KEEPALIVE = 30.0

Reason = Literal["status", "too_large", "timeout", "network", "content_type", "redirects"]

#: a host the allow-list trusts: connect to it by name
BY_NAME: Final = "by name"
Pin = tuple[netguard.IPAddress, ...] | Literal["by name"]
#: (host, port) -> the checked addresses of the request being sent, or BY_NAME
_PINS: contextvars.ContextVar[dict[tuple[str, int], Pin]] = contextvars.ContextVar(
    "backserv_fetch_pins"
)


class FetchFailed(Exception):
    """The fetch was allowed but did not bring back an acceptable body."""

    def __init__(self, reason: Reason, message: str, *, status: int | None = None) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message
        self.status = status


class _PinnedBackend(httpcore.AsyncNetworkBackend):
    """Connects only to the addresses the guard checked for the request being sent."""

    def __init__(self) -> None:
        self._inner = AsyncioBackend()

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        pinned = _PINS.get({}).get((host, port))
        if not pinned:  # not a request fetch_guarded checked: never connect
            raise httpcore.ConnectError(f"{host}:{port} was not checked by the guard")
        targets = [host] if pinned == BY_NAME else [str(a) for a in pinned[:MAX_ADDRESSES]]
        error: Exception = httpcore.ConnectError(f"no address of {host} to connect to")
        for target in targets:
            try:
                return await self._inner.connect_tcp(
                    target, port, timeout, local_address, socket_options
                )
            except (httpcore.ConnectError, httpcore.ConnectTimeout) as exc:
                error = exc
        raise error

    async def connect_unix_socket(
        self,
        path: str,
        timeout: float | None = None,
        socket_options: Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        raise httpcore.ConnectError("the guard connects to checked TCP addresses only")

    async def sleep(self, seconds: float) -> None:
        await self._inner.sleep(seconds)


def _pinned_client() -> LeanHttpClient:
    """A client whose connections go only to the addresses the guard checked
    (``_PinnedBackend``), on gateway/lean_client.py: no cookies, no redirects of its own."""
    limits = httpx.Limits(
        max_connections=MAX_CONNECTIONS,
        max_keepalive_connections=MAX_IDLE,
        keepalive_expiry=KEEPALIVE,
    )
    return LeanHttpClient(
        limits=limits,
        verify=tls_context(),
        backend=_PinnedBackend(),
        headers={"user-agent": USER_AGENT, "accept": "*/*"},
    )


class GuardedFetcher:
    """Long-lived clients for guarded fetches, one per allow-list; ``aclose()`` ends them."""

    def __init__(self) -> None:
        self._clients: dict[netguard.AllowList, LeanHttpClient] = {}
        self._gates: dict[netguard.AllowList, asyncio.Semaphore] = {}
        self._closed = False

    def client(self, allow: netguard.AllowList) -> LeanHttpClient:
        """The client of ``allow`` (made on first use)."""
        if self._closed:
            raise RuntimeError("the fetcher is closed")
        client = self._clients.get(allow)
        if client is None:
            client = self._clients[allow] = _pinned_client()
        return client

    async def fetch(
        self,
        url: str,
        *,
        allow: netguard.AllowList,
        max_bytes: int,
        timeout: float,
        accept: Sequence[str] | None = None,
        default_type: str = "application/octet-stream",
        param: str = "url",
        max_redirects: int = MAX_REDIRECTS,
    ) -> tuple[bytes, str]:
        """The body behind ``url`` and its media type (``default_type`` when none is sent).

        ``accept``: media type prefixes (``"image/"``) the response must have, or None for any.
        """
        limits = FetchLimits(max_bytes, accept, default_type, param, max_redirects)
        async with self.stream(url, allow=allow, timeout=timeout, limits=limits) as body:
            data = bytearray()
            async for chunk in body.chunks:
                data += chunk
            return bytes(data), body.content_type

    @contextlib.asynccontextmanager
    async def stream(
        self, url: str, *, allow: netguard.AllowList, timeout: float, limits: FetchLimits
    ) -> AsyncIterator[Body]:
        """The body behind ``url``, read chunk by chunk inside the ``async with`` (which the
        one ``timeout`` covers, the caller's work on the chunks included): a large file
        never has to be held whole. The same checks and errors as ``fetch``."""
        first = netguard.parse_url(url, param=limits.param)
        host = first.host or "?"
        client = self.client(allow)
        gate = self._gates.get(allow)
        if gate is None:
            gate = self._gates[allow] = asyncio.Semaphore(MAX_CONNECTIONS)
        # a turn first (each holder is bounded by its own timeout), then the timeout: waiting
        # behind this gateway's other downloads is not the remote's slowness
        try:
            async with gate, asyncio.timeout(timeout):
                response, last = await _follow(client, first, allow, timeout, limits)
                try:
                    body = _body(response, last, limits)
                    try:
                        yield body
                    finally:
                        await body.chunks.aclose()
                finally:
                    await response.aclose()
        except TimeoutError:
            raise FetchFailed(
                "timeout", f"no complete answer from {host} within {timeout:g} s"
            ) from None
        except httpx.TimeoutException as exc:
            raise FetchFailed("timeout", f"{host} timed out ({type(exc).__name__})") from exc
        except httpx.HTTPError as exc:
            raise FetchFailed(
                "network", f"could not fetch from {host} ({type(exc).__name__})"
            ) from exc

    async def aclose(self) -> None:
        """Close every client and its connections; later fetches are refused."""
        self._closed = True
        clients, self._clients = list(self._clients.values()), {}
        for client in clients:
            await client.aclose()


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
    fetcher: GuardedFetcher | None = None,
) -> tuple[bytes, str]:
    """``GuardedFetcher.fetch`` on ``fetcher``, or on a fetcher made for this one call."""
    owner = fetcher or GuardedFetcher()
    try:
        return await owner.fetch(
            url,
            allow=allow,
            max_bytes=max_bytes,
            timeout=timeout,
            accept=accept,
            default_type=default_type,
            param=param,
            max_redirects=max_redirects,
        )
    finally:
        if fetcher is None:
            await owner.aclose()


class FetchLimits(typing.NamedTuple):
    """What a fetched body must fit: size, media types, and the redirects followed."""

    max_bytes: int
    accept: Sequence[str] | None
    default_type: str
    param: str
    max_redirects: int


async def _follow(
    client: LeanHttpClient,
    url: httpx.URL,
    allow: netguard.AllowList,
    timeout: float,
    limits: FetchLimits,
) -> tuple[httpx.Response, httpx.URL]:
    """The open response (headers read, body not) at the end of the redirects, and its URL."""
    for hop in range(limits.max_redirects + 1):
        response = await _open(client, url, allow, timeout, limits.param, redirected=hop > 0)
        if not response.has_redirect_location:
            return response, url
        try:
            location = response.headers["location"]
            url = netguard.parse_url(str(url.join(location)), param=limits.param)
        finally:
            await response.aclose()
    raise FetchFailed("redirects", f"more than {limits.max_redirects} redirects from {url.host}")


async def _open(
    client: LeanHttpClient,
    url: httpx.URL,
    allow: netguard.AllowList,
    timeout: float,
    param: str,
    *,
    redirected: bool,
) -> httpx.Response:
    """The response (headers read, body not) of one GET of ``url``, through the guard."""
    host = url.raw_host.decode("ascii")
    port = url.port or (443 if url.scheme == "https" else 80)
    addresses: Pin = BY_NAME
    if not allow.permits_host(host):
        try:
            addresses = tuple(await netguard.check_url(url, allow, param=param))
        except UnsafeURL as exc:
            if not redirected:
                raise
            raise UnsafeURL(f"'{param}' redirected: {exc.message}", param=param) from None
    pins = _PINS.set({(host, port): addresses})
    try:
        return await client.open_get(url, timeout=timeout)
    finally:
        _PINS.reset(pins)


class Body(typing.NamedTuple):
    """An accepted response: its media type, declared length, and its bytes in chunks (the
    iteration raises ``FetchFailed("too_large")`` once past the limit)."""

    content_type: str
    length: int | None
    chunks: AsyncGenerator[bytes, None]


def _body(response: httpx.Response, url: httpx.URL, limits: FetchLimits) -> Body:
    host = url.host or "?"
    if not response.is_success:
        raise FetchFailed(
            "status",
            f"fetching from {host} failed with HTTP {response.status_code}",
            status=response.status_code,
        )
    default_type = limits.default_type
    content_type = response.headers.get("content-type", default_type).split(";")[0].strip()
    content_type = content_type.lower() or default_type
    if limits.accept is not None and not content_type.startswith(tuple(limits.accept)):
        raise FetchFailed("content_type", f"{host} answered content type '{content_type}'")
    too_large = f"the body from {host} is larger than {limits.max_bytes} bytes"
    declared = parse_digits(response.headers.get("content-length", ""))
    if declared is not None and declared > limits.max_bytes:
        raise FetchFailed("too_large", too_large)
    return Body(content_type, declared, _bounded(response, limits.max_bytes, too_large))


async def _bounded(
    response: httpx.Response, max_bytes: int, too_large: str
) -> AsyncGenerator[bytes, None]:
    seen = 0
    async for chunk in response.aiter_bytes():
        seen += len(chunk)
        if seen > max_bytes:
            raise FetchFailed("too_large", too_large)
        yield chunk
