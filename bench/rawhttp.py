"""A minimal HTTP/1.1 client on asyncio streams, for load the harness shapes itself.

httpx spends about a millisecond of client CPU per request; on a 2-core machine shared with
the gateway that is noise in the figures, and it blurs the send timestamps that target 5
measures from. This client writes one request per keep-alive connection, reads the answer
by ``Content-Length`` (the only framing the gateway's JSON answers use) and nothing else.
"""

from __future__ import annotations

import asyncio
import time
from urllib.parse import urlsplit

#: uvicorn closes a keep-alive connection after 5 s idle; never reuse one that close to it
_IDLE_LIMIT = 3.0


class HTTPError(Exception):
    pass


class Connection:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer
        self.used_at = time.monotonic()

    async def request(self, head: bytes, body: bytes) -> tuple[int, bytes]:
        self.writer.write(head + body)
        raw = await self.reader.readuntil(b"\r\n\r\n")
        lines = raw.decode("latin-1").split("\r\n")
        status = int(lines[0].split(" ", 2)[1])
        length = 0
        for line in lines[1:]:
            name, _, value = line.partition(":")
            name = name.strip().lower()
            if name == "content-length":
                length = int(value)
            elif name == "transfer-encoding":
                raise HTTPError(f"cannot read a {value.strip()} body")
        data = await self.reader.readexactly(length) if length else b""
        self.used_at = time.monotonic()
        return status, data

    def close(self) -> None:
        self.writer.close()


class Pool:
    """Keep-alive connections to one server; a request takes an idle one or opens another
    (at most ``size`` at once: the rest wait)."""

    def __init__(self, base_url: str, headers: dict[str, str] | None = None, size: int = 64):
        parts = urlsplit(base_url)
        self.host = parts.hostname or "127.0.0.1"
        self.port = parts.port or 80
        extra = "".join(f"{k}: {v}\r\n" for k, v in (headers or {}).items())
        self._extra = f"Host: {self.host}:{self.port}\r\n{extra}"
        self._idle: list[Connection] = []
        self._gate = asyncio.Semaphore(size)

    def _head(self, method: str, path: str, body: bytes, content_type: str | None) -> bytes:
        head = f"{method} {path} HTTP/1.1\r\n{self._extra}Content-Length: {len(body)}\r\n"
        if content_type:
            head += f"Content-Type: {content_type}\r\n"
        return (head + "\r\n").encode("latin-1")

    async def _connection(self) -> Connection:
        now = time.monotonic()
        while self._idle:
            conn = self._idle.pop()
            if now - conn.used_at < _IDLE_LIMIT:
                return conn
            conn.close()
        reader, writer = await asyncio.open_connection(self.host, self.port)
        return Connection(reader, writer)

    async def request(
        self,
        method: str,
        path: str,
        body: bytes = b"",
        content_type: str | None = None,
        on_send: list[float] | None = None,
    ) -> tuple[int, bytes]:
        """One request; ``on_send`` gets ``time.time()`` of the moment it is written."""
        head = self._head(method, path, body, content_type)
        async with self._gate:
            conn = await self._connection()
            try:
                if on_send is not None:
                    on_send.append(time.time())
                status, data = await conn.request(head, body)
            except BaseException:
                conn.close()
                raise
            self._idle.append(conn)
            return status, data

    async def get(self, path: str) -> tuple[int, bytes]:
        return await self.request("GET", path)

    async def post_json(
        self, path: str, body: bytes, on_send: list[float] | None = None
    ) -> tuple[int, bytes]:
        return await self.request("POST", path, body, "application/json", on_send)

    def close(self) -> None:
        for conn in self._idle:
            conn.close()
        self._idle.clear()


class Spread:
    """Pools to several replicas of one gateway, taken in turn: each request goes to the next
    replica (a load balancer's round robin)."""

    def __init__(self, base_urls: list[str], headers: dict[str, str], size: int = 64) -> None:
        per = max(1, size // max(1, len(base_urls)))
        self.pools = [Pool(url, headers, size=per) for url in base_urls]
        self._next = 0

    def _pool(self) -> Pool:
        pool = self.pools[self._next % len(self.pools)]
        self._next += 1
        return pool

    async def post_json(
        self, path: str, body: bytes, on_send: list[float] | None = None
    ) -> tuple[int, bytes]:
        return await self._pool().post_json(path, body, on_send)

    def close(self) -> None:
        for pool in self.pools:
            pool.close()
