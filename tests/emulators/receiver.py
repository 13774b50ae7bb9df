"""A webhook endpoint for tests: it records every POST and answers what the test queued.

receiver = Receiver()
async with serve(receiver.app) as base_url:   # or httpx.ASGITransport(app=receiver.app)
    url = f"{base_url}/hook"
    ...
    [delivery] = await receiver.wait_for(1)
"""

from __future__ import annotations

import asyncio
from collections import deque
from dataclasses import dataclass
from typing import Any

import orjson
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route


@dataclass(frozen=True)
class Received:
    """One POST as it arrived: the raw body, the headers (lower-case names), what it got."""

    path: str
    query: str
    headers: dict[str, str]
    body: bytes
    status: int

    def json(self) -> Any:
        return orjson.loads(self.body)


class Receiver:
    """Answers each POST with the next queued ``statuses`` (200 once they run out), after
    ``hang`` seconds; ``received`` lists them in order of arrival."""

    def __init__(self) -> None:
        self.received: list[Received] = []
        self.statuses: deque[int] = deque()
        self.hang = 0.0
        self._arrived = asyncio.Event()
        self.app = Starlette(routes=[Route("/{path:path}", self._handle, methods=["POST"])])

    async def _handle(self, request: Request) -> Response:
        body = await request.body()
        status = self.statuses.popleft() if self.statuses else 200
        self.received.append(
            Received(
                path=request.url.path,
                query=request.url.query,
                headers=dict(request.headers),
                body=body,
                status=status,
            )
        )
        self._arrived.set()
        if self.hang:
            await asyncio.sleep(self.hang)
        return Response(b"", status)

    async def wait_for(self, count: int, timeout: float = 5.0) -> list[Received]:
        """The first ``count`` POSTs, once they have arrived."""
        async with asyncio.timeout(timeout):
            while len(self.received) < count:
                self._arrived.clear()
                await self._arrived.wait()
        return self.received[:count]
