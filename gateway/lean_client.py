"""A small HTTP client for the gateway's own API calls to providers, straight on a LeanPool.

Under httpx's client, a provider call's CPU went mostly to httpx itself once the pool and
HTTP/1.1 were the gateway's own (gateway/lean_pool.py, gateway/http1.py): parsing the URL
with its pure-Python parser, merging headers and cookies, the auth and redirect generators,
the transport's mapping of the request and of the answer's stream. A provider call needs
none of that: a method, a URL the gateway built or the provider gave, a JSON body, a handful
of headers, and the whole (small) answer. ``LeanHttpClient.request`` builds the pool's
request directly and returns an ``httpx.Response`` whose body is already read, so callers
keep httpx's answer API (``status_code``, ``json()``, ``headers``, ``is_error``) and its
errors: a transport failure raises httpx's class for it (``httpx.ConnectError``,
``httpx.ReadTimeout``, ...), with its ``request`` set, as httpx's transport would.

Each request is logged at INFO on ``backserv.http`` as httpx logged it (``HTTP Request: POST
<url> "HTTP/1.1 200 OK"``), its URL through ``redact_url`` (no query, no user info).

respx still sees every call: it mocks the pool (tests/conftest.py adds ``LeanPool`` to its
targets). Not done here: redirects (an API call is not redirected), cookies, compression
(none is asked for: ``Accept-Encoding`` is not sent), proxies. Answers larger than
``max_bytes`` fail with ``httpx.RemoteProtocolError`` (a provider's JSON is small; files go
through gateway/fetch.py).
"""

from __future__ import annotations

import contextlib
import functools
import logging
import ssl
from collections.abc import AsyncIterator, Iterator, Mapping
from typing import Any
from urllib.parse import quote, urlencode, urlsplit

import httpcore
import httpx
import orjson

from gateway.lean_net import AsyncioBackend
from gateway.lean_pool import LeanPool
from gateway.observability.redact import redact_url

__all__ = ["MAX_ANSWER_BYTES", "LeanHttpClient", "tls_context"]

log = logging.getLogger("backserv.http")

MAX_ANSWER_BYTES = 16 * 1024 * 1024
_DEFAULT_PORTS = {"http": 80, "https": 443}
_SAFE_PATH = "/%:@!$&'()*+,;=-._~"
_SAFE_QUERY = _SAFE_PATH + "?"

#: httpcore's errors as httpx raises them (httpx's own table, ``map_httpcore_exceptions``)
_ERRORS: tuple[tuple[type[Exception], type[httpx.TransportError]], ...] = (
    (httpcore.ConnectTimeout, httpx.ConnectTimeout),
    (httpcore.ReadTimeout, httpx.ReadTimeout),
    (httpcore.WriteTimeout, httpx.WriteTimeout),
    (httpcore.PoolTimeout, httpx.PoolTimeout),
    (httpcore.TimeoutException, httpx.TimeoutException),
    (httpcore.ConnectError, httpx.ConnectError),
    (httpcore.ReadError, httpx.ReadError),
    (httpcore.WriteError, httpx.WriteError),
    (httpcore.NetworkError, httpx.NetworkError),
    (httpcore.ProxyError, httpx.ProxyError),
    (httpcore.UnsupportedProtocol, httpx.UnsupportedProtocol),
    (httpcore.RemoteProtocolError, httpx.RemoteProtocolError),
    (httpcore.LocalProtocolError, httpx.LocalProtocolError),
    (httpcore.ProtocolError, httpx.ProtocolError),
)


@functools.cache
def tls_context() -> ssl.SSLContext:
    """One TLS context (the system's CAs) for every outgoing client of the process: building
    one loads the CA bundle, 40-60 ms of CPU, so it is built once, and the app builds it in a
    thread at startup (not on the event loop at the first provider call or download)."""
    return httpx.create_ssl_context()


_HTTPCORE_ERRORS = tuple(ours for ours, _ in _ERRORS)


class LeanHttpClient:
    """Requests with a whole, small answer, on one LeanPool (``aclose()`` ends it)."""

    def __init__(
        self,
        *,
        limits: httpx.Limits,
        headers: Mapping[str, str] | None = None,
        verify: ssl.SSLContext | bool = True,
        backend: httpcore.AsyncNetworkBackend | None = None,
        max_bytes: int = MAX_ANSWER_BYTES,
    ) -> None:
        if isinstance(verify, ssl.SSLContext):
            context = verify
        else:
            context = tls_context() if verify else httpx.create_ssl_context(verify=False)
        self.pool = LeanPool(
            ssl_context=context,
            network_backend=backend or AsyncioBackend(),
            max_connections=limits.max_connections,
            max_keepalive_connections=limits.max_keepalive_connections,
            keepalive_expiry=limits.keepalive_expiry,
        )
        self._headers = [_header(k, v) for k, v in (headers or {}).items()]
        self._max_bytes = max_bytes
        self._closed = False

    @property
    def is_closed(self) -> bool:
        return self._closed

    async def aclose(self) -> None:
        self._closed = True
        await self.pool.aclose()

    async def request(
        self,
        method: str,
        url: str,
        *,
        timeout: float,
        connect_timeout: float | None = None,
        params: Mapping[str, str] | None = None,
        json: Any = None,
        headers: Mapping[str, str] | None = None,
        extensions: dict[str, Any] | None = None,
    ) -> httpx.Response:
        """``method url`` (``params`` added to its query), ``json`` as its body; the answer
        whole. ``timeout`` bounds each step (connect, write, read, waiting for a
        connection); ``connect_timeout``, if given, the connection alone."""
        target = _Target(url, params)
        head = [(b"host", target.host_header), *self._headers]
        body = b""
        if json is not None:
            body = orjson.dumps(json)
            head.append((b"content-type", b"application/json"))
        if body or method in ("POST", "PUT", "PATCH"):
            head.append((b"content-length", b"%d" % len(body)))
        for name, value in (headers or {}).items():
            head.append(_header(name, value))
        step = {"connect": connect_timeout or timeout, "read": timeout, "write": timeout}
        step["pool"] = timeout
        answer = await self._send(
            method, target, head, body, {**(extensions or {}), "timeout": step}
        )
        with _errors(method, target):
            try:
                content = await _read(answer, self._max_bytes)
            finally:
                await answer.aclose()
        return _response(answer, content=content)

    async def open_get(self, url: httpx.URL, *, timeout: float) -> httpx.Response:
        """A GET of ``url`` (already parsed, and checked by the caller), its answer's head
        read and its body not: iterate it, then ``aclose()`` the answer."""
        target = _Target.of_httpx(url)
        head = [(b"host", target.host_header), *self._headers]
        step = dict.fromkeys(("connect", "read", "write", "pool"), timeout)
        answer = await self._send("GET", target, head, b"", {"timeout": step})
        return _response(answer, stream=_Stream(answer, target))

    async def _send(
        self,
        method: str,
        target: _Target,
        head: list[tuple[bytes, bytes]],
        body: bytes,
        extensions: dict[str, Any],
    ) -> httpcore.Response:
        """The pool's answer (its head read) to one request, logged; httpx's errors."""
        if self._closed:
            raise RuntimeError("the client is closed")
        request = httpcore.Request(
            method.encode("ascii"),
            httpcore.URL(
                scheme=target.scheme, host=target.host, port=target.port, target=target.target
            ),
            headers=head,
            content=body,
            extensions=extensions,
        )
        with _errors(method, target):
            answer = await self.pool.handle_async_request(request)
        _logged(method, target, answer.status, answer.extensions.get("reason_phrase", b""))
        return answer


def _response(answer: httpcore.Response, **body: Any) -> httpx.Response:
    """httpx's answer for the pool's: its ``content`` read, or its ``stream`` to read."""
    reason = answer.extensions.get("reason_phrase", b"")
    return httpx.Response(
        answer.status,
        headers=answer.headers,
        extensions={"http_version": b"HTTP/1.1", "reason_phrase": reason},
        **body,
    )


class _Stream(httpx.AsyncByteStream):
    """An open answer's body for httpx, the pool's errors raised as httpx's."""

    def __init__(self, answer: httpcore.Response, target: _Target) -> None:
        self._answer = answer
        self._target = target

    async def __aiter__(self) -> AsyncIterator[bytes]:
        with _errors("GET", self._target):
            async for chunk in self._answer.aiter_stream():
                yield chunk

    async def aclose(self) -> None:
        await self._answer.aclose()


class _Target:
    """A URL's parts as the pool needs them (its path and query percent-encoded)."""

    __slots__ = ("host", "host_header", "port", "scheme", "target", "url")

    @classmethod
    def of_httpx(cls, url: httpx.URL) -> _Target:
        """The parts of a URL httpx already parsed and encoded."""
        target = cls.__new__(cls)
        target.url = str(url)
        target.scheme = url.raw_scheme
        target.host = url.raw_host
        target.port = url.port
        target.host_header = url.netloc
        target.target = url.raw_path
        return target

    def __init__(self, url: str, params: Mapping[str, str] | None) -> None:
        parts = urlsplit(url)
        scheme = parts.scheme.lower()
        if scheme not in _DEFAULT_PORTS:
            raise httpx.UnsupportedProtocol(f"unsupported URL scheme {parts.scheme!r}")
        try:
            host = parts.hostname
            port = parts.port
        except ValueError as exc:
            raise httpx.InvalidURL(f"invalid URL: {exc}") from None
        if not host:
            raise httpx.InvalidURL("the URL has no host")
        path = quote(parts.path or "/", safe=_SAFE_PATH)
        query = quote(parts.query, safe=_SAFE_QUERY)
        if params:
            query = f"{query}&{urlencode(params)}" if query else urlencode(params)
        self.url = url
        self.scheme = scheme.encode("ascii")
        try:
            self.host = host.encode("ascii") if host.isascii() else host.encode("idna")
        except UnicodeError:
            raise httpx.InvalidURL(f"invalid host name {host!r}") from None
        self.port = port
        shown = self.host if b":" not in self.host else b"[" + self.host + b"]"
        if port is None or port == _DEFAULT_PORTS[scheme]:
            self.host_header = shown
        else:
            self.host_header = b"%s:%d" % (shown, port)
        self.target = (f"{path}?{query}" if query else path).encode("ascii")


def _logged(method: str, target: _Target, status: int, reason: bytes) -> None:
    if log.isEnabledFor(logging.INFO):
        log.info(
            'HTTP Request: %s %s "HTTP/1.1 %d %s"',
            method,
            redact_url(target.url),
            status,
            reason.decode("latin-1"),
        )


def _header(name: str, value: str) -> tuple[bytes, bytes]:
    return name.lower().encode("ascii"), value.encode("latin-1")


async def _read(answer: httpcore.Response, max_bytes: int) -> bytes:
    chunks: list[bytes] = []
    size = 0
    async for chunk in answer.aiter_stream():
        size += len(chunk)
        if size > max_bytes:
            raise httpcore.RemoteProtocolError(f"the answer is larger than {max_bytes} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


@contextlib.contextmanager
def _errors(method: str, target: _Target) -> Iterator[None]:
    """httpcore's errors raised as httpx's (with the request, for messages naming its host)."""
    try:
        yield
    except _HTTPCORE_ERRORS as exc:
        raise _mapped(exc, method, target) from exc
    except httpx.RequestError as exc:  # httpx's own (a mocked pool raises them)
        if exc._request is None:
            exc.request = httpx.Request(method, target.url)
        raise


def _mapped(exc: Exception, method: str, target: _Target) -> httpx.TransportError:
    kind = next(theirs for ours, theirs in _ERRORS if isinstance(exc, ours))
    return kind(str(exc), request=httpx.Request(method, target.url))
