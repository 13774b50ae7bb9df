"""A webhook receiver on a real socket, and a signature verifier written from the spec.

The verifier is deliberately independent of ``gateway.webhooks.signing``: it is what a
receiver following Standard Webhooks would write (HMAC-SHA256 keyed with the base64 bytes
after ``whsec_``, over ``"{webhook-id}.{webhook-timestamp}." + body``, base64, ``v1,``).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import hmac
import json
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route

from tests.emulators.server import serve

T = TypeVar("T")


def verify_standard_webhook(
    secret: str, headers: Mapping[str, str], body: bytes, now: float | None = None
) -> bool:
    """True if ``webhook-signature`` holds a valid ``v1`` signature of this message."""
    message_id = headers["webhook-id"]
    timestamp = headers["webhook-timestamp"]
    if abs((time.time() if now is None else now) - int(timestamp)) > 300:
        return False
    key = base64.b64decode(secret.split("_", 1)[1])
    signed = f"{message_id}.{timestamp}.".encode() + body
    expected = base64.b64encode(hmac.new(key, signed, hashlib.sha256).digest())
    for candidate in headers["webhook-signature"].split(" "):
        version, _, signature = candidate.partition(",")
        if version == "v1" and hmac.compare_digest(signature.encode(), expected):
            return True
    return False


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: bytes

    @property
    def payload(self) -> dict[str, Any]:
        data: dict[str, Any] = json.loads(self.body)
        return data


@dataclass
class Receiver:
    """Answers POST /hook with the next of ``statuses`` (then 200), after ``delay`` s."""

    statuses: list[int] = field(default_factory=list)
    delay: float = 0.0
    received: list[Received] = field(default_factory=list)
    base_url: str = ""

    @property
    def url(self) -> str:
        return f"{self.base_url}/hook"

    async def _hook(self, request: Request) -> Response:
        body = await request.body()
        self.received.append(Received(request.url.path, dict(request.headers), body))
        if self.delay:
            await asyncio.sleep(self.delay)
        status = self.statuses.pop(0) if self.statuses else 200
        if 300 <= status < 400:
            return RedirectResponse("/elsewhere", status_code=status)
        return Response(b"ok" if status < 300 else b"nope", status_code=status)

    def app(self) -> Starlette:
        return Starlette(
            routes=[
                Route("/hook", self._hook, methods=["POST"]),
                Route("/elsewhere", self._hook, methods=["POST", "GET"]),
            ]
        )

    def of_type(self, event_type: str) -> list[Received]:
        return [r for r in self.received if r.payload["type"] == event_type]

    async def wait_until(self, count: int, timeout: float = 10.0) -> None:
        """Until ``count`` requests arrived (AssertionError after ``timeout``)."""
        deadline = time.monotonic() + timeout
        while len(self.received) < count:
            if time.monotonic() > deadline:
                raise AssertionError(f"{len(self.received)} of {count} webhooks arrived")
            await asyncio.sleep(0.01)


@contextlib.asynccontextmanager
async def receiving(
    statuses: list[int] | None = None, delay: float = 0.0
) -> AsyncIterator[Receiver]:
    receiver = Receiver(list(statuses or []), delay)
    async with serve(receiver.app()) as base_url:
        receiver.base_url = base_url
        yield receiver


async def eventually(check: Callable[[], Awaitable[T]], timeout: float = 10.0) -> T:
    """Await ``check()`` until it returns something truthy; return that."""
    deadline = time.monotonic() + timeout
    while True:
        value = await check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.02)
