"""One HTTP/1.1 client connection, parsed by httptools (llhttp, C) instead of h11.

httpcore speaks HTTP/1.1 through h11, a pure-Python state machine that validates every
header of every request and answer with regular expressions and walks its states event by
event; with the connection and tracing layers around it, that was about a third of an
outgoing request's CPU in the gateway. A ``Http1Connection`` writes the request's head in
one ``bytes`` and parses the answer with httptools (already installed with uvicorn).

It serves httpcore's model (``httpcore.Request`` in, ``httpcore.Response`` out, its error
classes), so httpx's transport sits on top unchanged (its API, its error mapping). The pool
(gateway/lean_pool.py) gives it one request at a time; the answer's body is streamed, and
when the stream is closed the connection goes back to the pool if the answer was read to
its end and both sides keep it alive, or is closed otherwise.

httpcore's ``trace`` request extension is honoured for the events a caller needs to tell
whether a request went out: ``http11.send_request_headers.started`` before the first byte
is written, ``http11.send_request_body.complete`` once all of it is, and
``http11.receive_response_headers.complete`` when the answer's head has arrived.

What a connection does not do: HTTP/2, upgrades, ``Expect: 100-continue`` (1xx answers are
skipped), pipelining. A request head or header the caller built badly (a line break inside
a value) is refused before anything is sent.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import AsyncIterable, AsyncIterator, Callable
from typing import cast

import httpcore
import httptools

from gateway.lean_net import AsyncioStream

__all__ = ["READ_SIZE", "Http1Connection"]

READ_SIZE = 64 * 1024
_NO_BODY_STATUS = frozenset({204, 304})


def _timeout(request: httpcore.Request, which: str) -> float | None:
    timeouts: dict[str, float | None] = request.extensions.get("timeout", {})
    return timeouts.get(which)


def _head(request: httpcore.Request) -> bytes:
    """The request line and headers, checked: no CR or LF where they would split them."""
    url = request.url
    parts = [request.method, b" ", url.target, b" HTTP/1.1\r\n"]
    for name, value in request.headers:
        parts += (name, b": ", value, b"\r\n")
    parts.append(b"\r\n")
    head = b"".join(parts)
    lines = head.count(b"\n")
    if lines != len(request.headers) + 2 or head.count(b"\r") != lines:
        raise httpcore.LocalProtocolError("a request line or header holds a line break")
    return head


class _Answer:
    """httptools' callbacks: what one answer said, as it arrives."""

    def __init__(self) -> None:
        # the parser holds this answer's bound methods and the answer holds the parser: a
        # cycle only a garbage collection would free, so ``drop_parser`` breaks it at the end
        self.parser: httptools.HttpResponseParser | None = httptools.HttpResponseParser(self)
        self.body: deque[bytes] = deque()
        self.extra = False  # the server sent more than this answer: never reuse
        self._begin()

    def _begin(self) -> None:
        self.status = 0
        self.reason = b""
        self.headers: list[tuple[bytes, bytes]] = []
        self.headed = False
        self.complete = False
        self.framed = False  # Content-Length or chunked: the end is known without EOF
        self.keep_alive = False

    @property
    def final(self) -> bool:
        """The head of the final (not informational) answer has been read."""
        return self.headed and self.status >= 200

    def feed(self, data: bytes) -> None:
        try:
            assert self.parser is not None, "the answer was already given back"
            self.parser.feed_data(data)
        except httptools.HttpParserError as exc:
            raise httpcore.RemoteProtocolError(f"malformed answer: {exc}") from None

    def drop_parser(self) -> None:
        """The answer is done with: let its parser go now (see ``__init__``)."""
        self.parser = None

    def on_message_begin(self) -> None:
        if self.headed and self.status < 200:
            self._begin()  # a 1xx answer ended: the real one starts
        elif self.headed:
            self.extra = True

    def on_status(self, reason: bytes) -> None:
        self.reason += reason

    def on_header(self, name: bytes, value: bytes) -> None:
        self.headers.append((name, value))
        lowered = name.lower()
        if lowered == b"content-length" or lowered == b"transfer-encoding":
            self.framed = True

    def on_headers_complete(self) -> None:
        self.headed = True
        assert self.parser is not None
        self.status = self.parser.get_status_code()
        self.keep_alive = self.parser.should_keep_alive()  # llhttp forgets it once complete

    def on_body(self, body: bytes) -> None:
        if not self.extra:
            self.body.append(body)

    def on_message_complete(self) -> None:
        if self.status >= 200:
            self.complete = True


class Http1Connection:
    """An HTTP/1.1 connection to one origin, sending one request at a time."""

    def __init__(
        self,
        origin: tuple[bytes, bytes, int],
        stream: AsyncioStream,
        release: Callable[[Http1Connection, bool], None],
    ) -> None:
        self.origin = origin
        self.stream = stream
        self.idle_since = time.monotonic()
        self.used = False  # it has carried a request before (a stale keep-alive is possible)
        self._release = release
        self._closed = False

    def is_closed(self) -> bool:
        return self._closed

    def is_stale(self) -> bool:
        """Whether the server closed it, or sent something unasked, while it was idle."""
        return self._closed or bool(self.stream.get_extra_info("is_readable"))

    def close(self) -> None:
        """Close it now (an asyncio transport closes without waiting)."""
        if not self._closed:
            self._closed = True
            self.stream.close()

    async def send(self, request: httpcore.Request) -> httpcore.Response:
        """Send ``request`` and read the answer's head; its body streams from the answer.
        On any failure the connection is closed and given back (the error is raised)."""
        trace = request.extensions.get("trace")
        answer = _Answer()
        try:
            if trace is not None:
                await trace("http11.send_request_headers.started", {"request": request})
            await self._write(request)
            if trace is not None:
                await trace("http11.send_request_body.complete", {"request": request})
            while not answer.final:
                await self._read_into(answer, request)
            if trace is not None:
                await trace("http11.receive_response_headers.complete", {"request": request})
        except BaseException:
            answer.drop_parser()
            self._fail()
            raise
        if request.method == b"HEAD" or answer.status in _NO_BODY_STATUS:
            answer.complete = True  # whatever its Content-Length says, no body follows
            answer.body.clear()
        return httpcore.Response(
            answer.status,
            headers=answer.headers,
            content=_Body(self, answer, request),
            extensions={
                "http_version": b"HTTP/1.1",
                "reason_phrase": answer.reason,
                "network_stream": self.stream,
            },
        )

    async def _write(self, request: httpcore.Request) -> None:
        head = _head(request)
        timeout = _timeout(request, "write")
        chunked = any(
            n.lower() == b"transfer-encoding" and v.lower() == b"chunked"
            for n, v in request.headers
        )
        pending = head
        async for chunk in cast(AsyncIterable[bytes], request.stream):
            if not chunk:
                continue
            if chunked:
                chunk = b"%x\r\n%s\r\n" % (len(chunk), chunk)
            if pending and len(pending) + len(chunk) <= READ_SIZE:
                pending += chunk  # a small body goes out with the head, one write
                continue
            await self.stream.write(pending, timeout)
            pending = chunk
        if chunked:
            pending += b"0\r\n\r\n"
        await self.stream.write(pending, timeout)

    async def _read_into(self, answer: _Answer, request: httpcore.Request) -> None:
        """Read once and feed the parser; the end of the stream ends an unframed body."""
        data = await self.stream.read(READ_SIZE, _timeout(request, "read"))
        if not data:
            if answer.headed and not answer.framed and not answer.complete:
                answer.complete = True  # the body ran to the connection's close
                return
            raise httpcore.RemoteProtocolError(
                "the server closed the connection before its answer was complete"
                if answer.headed
                else "the server closed the connection without answering"
            )
        answer.feed(data)

    def _fail(self) -> None:
        self.close()
        self._release(self, False)

    def _done(self, reusable: bool) -> None:
        self.idle_since = time.monotonic()
        self.used = True
        self._release(self, reusable)


class _Body:
    """An answer's body, read from the connection as the caller iterates it."""

    def __init__(
        self,
        connection: Http1Connection,
        answer: _Answer,
        request: httpcore.Request,
    ) -> None:
        self._connection = connection
        self._answer = answer
        self._request = request
        self._closed = False

    async def __aiter__(self) -> AsyncIterator[bytes]:
        answer = self._answer
        try:
            while True:
                while answer.body:
                    yield answer.body.popleft()
                if answer.complete or self._closed:
                    return
                await self._connection._read_into(answer, self._request)
        except BaseException:
            self._give_back(reusable=False)
            raise

    async def aclose(self) -> None:
        answer = self._answer
        self._give_back(reusable=answer.complete and answer.keep_alive and not answer.extra)

    def _give_back(self, *, reusable: bool) -> None:
        if self._closed:
            return
        self._closed = True
        self._answer.drop_parser()
        if reusable and not self._connection.is_stale():
            self._connection._done(True)
        else:
            self._connection._fail()

    def __repr__(self) -> str:
        return f"<answer body of {self._connection.origin!r}>"
