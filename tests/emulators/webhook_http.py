"""A lean HTTP/1.1 POST for webhook deliveries to plain-http loopback targets.

httpx walks its whole connection pool on every request start and finish: with a few dozen
deliveries in flight that costs an emulator milliseconds per webhook, CPU that a benchmark's
gateway on the same 2-core machine needs. This keeps idle keep-alive connections per target
and speaks just enough HTTP/1.1 to read a status (Content-Length, chunked or read-to-close
bodies). https targets and injected transports go through httpx instead (webhooks.py).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import urlsplit

Connection = tuple[asyncio.StreamReader, asyncio.StreamWriter]


@dataclass(frozen=True)
class Target:
    host: str
    port: int
    netloc: str
    path: str

    @classmethod
    def of(cls, url: str) -> Target:
        parts = urlsplit(url)
        if parts.scheme != "http" or not parts.hostname:
            raise ValueError(f"not a plain-http URL: {url!r}")
        path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        return cls(parts.hostname, parts.port or 80, parts.netloc, path)


class StaleConnection(Exception):
    """A kept-alive connection the server had closed before it answered."""


class LoopbackPoster:
    """POSTs over kept-alive connections, at most ``keep`` idle ones per target."""

    def __init__(self, keep: int = 64) -> None:
        self._keep = keep
        self._idle: dict[tuple[str, int], list[Connection]] = {}

    async def post(self, url: str, body: bytes, headers: Mapping[str, str], timeout: float) -> int:
        """The answer's status; TimeoutError past ``timeout``, OSError when unreachable."""
        target = Target.of(url)
        head = _head(target, body, headers)
        async with asyncio.timeout(timeout):
            while (idle := self._take(target)) is not None:
                with contextlib.suppress(StaleConnection):
                    return await self._exchange(target, idle, head, body, reused=True)
            opened = await asyncio.open_connection(target.host, target.port)
            return await self._exchange(target, opened, head, body, reused=False)

    async def aclose(self) -> None:
        connections = [c for idle in self._idle.values() for c in idle]
        self._idle.clear()
        for _, writer in connections:
            writer.close()
        for _, writer in connections:
            with contextlib.suppress(OSError):
                await writer.wait_closed()

    def _take(self, target: Target) -> Connection | None:
        idle = self._idle.get((target.host, target.port))
        while idle:
            reader, writer = idle.pop()
            if not reader.at_eof() and not writer.is_closing():
                return reader, writer
            writer.close()
        return None

    async def _exchange(
        self, target: Target, connection: Connection, head: bytes, body: bytes, *, reused: bool
    ) -> int:
        reader, writer = connection
        try:
            writer.write(head + body)
            await writer.drain()
            try:
                status_line = await reader.readuntil(b"\r\n")
            except (asyncio.IncompleteReadError, ConnectionError) as exc:
                if reused:
                    raise StaleConnection from exc
                raise
            status, keep = await _read_answer(reader, status_line)
        except BaseException:
            writer.close()  # half an exchange: the connection cannot be trusted again
            raise
        idle = self._idle.setdefault((target.host, target.port), [])
        if keep and len(idle) < self._keep:
            idle.append(connection)
        else:
            writer.close()
        return status


def _head(target: Target, body: bytes, headers: Mapping[str, str]) -> bytes:
    lines = [f"POST {target.path} HTTP/1.1", f"host: {target.netloc}"]
    lines.append(f"content-length: {len(body)}")
    lines.extend(f"{name}: {value}" for name, value in headers.items())
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


async def _read_answer(reader: asyncio.StreamReader, status_line: bytes) -> tuple[int, bool]:
    """Read the rest of an answer; its status, and whether the connection may be kept."""
    version, _, rest = status_line.partition(b" ")
    status = int(rest[:3])
    keep = version == b"HTTP/1.1"
    length: int | None = None
    chunked = False
    while (line := await reader.readuntil(b"\r\n")) != b"\r\n":
        name, _, value = line.partition(b":")
        name, value = name.strip().lower(), value.strip().lower()
        if name == b"content-length":
            length = int(value)
        elif name == b"transfer-encoding":
            chunked = value.endswith(b"chunked")
        elif name == b"connection":
            keep = value == b"keep-alive" or (keep and value != b"close")
    if chunked:
        while size := int((await reader.readuntil(b"\r\n")).split(b";")[0], 16):
            await reader.readexactly(size + 2)
        while await reader.readuntil(b"\r\n") != b"\r\n":
            pass  # trailers
    elif length is not None:
        await reader.readexactly(length)
    elif status not in (204, 304) and not 100 <= status < 200:
        await reader.read()  # the body runs to the end of the connection
        keep = False
    return status, keep
