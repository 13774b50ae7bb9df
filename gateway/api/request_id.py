"""The one middleware on every request: its ``x-request-id`` and, when metrics are on, its
latency (``gateway/observability/http_metrics.py``).

Every response carries ``x-request-id``: the client's own (if sane) or a new one. The id is
also put in ``scope["state"]["request_id"]`` and in a context variable for log lines. Both
jobs share one pure ASGI layer (no per-request Starlette objects, one wrapper of ``send``):
polls and submits are the hot paths, and each layer costs a coroutine and a wrapper per
request.
"""

from __future__ import annotations

import contextvars
import re
import time

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from gateway.observability.http_metrics import HttpLatency
from gateway.random_ids import RandomIds

HEADER = b"x-request-id"
_VALID = re.compile(rb"^[A-Za-z0-9._:-]{1,128}$")

current_request_id: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "request_id", default=None
)


#: ``req_`` and 96 bits from the OS's CSPRNG (as job ids), drawn many at a time
new_request_id = RandomIds("req_")


class RequestIdMiddleware:
    def __init__(self, app: ASGIApp, latency: HttpLatency | None = None) -> None:
        self.app = app
        self.latency = latency

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        entry_root = scope.get("root_path", "")
        given = next((v for k, v in scope["headers"] if k == HEADER), None)
        rid = given.decode() if given is not None and _VALID.match(given) else new_request_id()
        scope.setdefault("state", {})["request_id"] = rid
        token = current_request_id.set(rid)
        raw = rid.encode()
        status = 500  # unless a response starts: an exception escaped the app

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message["headers"] = [*message.get("headers", ()), (HEADER, raw)]
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        finally:
            current_request_id.reset(token)
            if self.latency is not None:
                self.latency.observe(scope, entry_root, status, time.perf_counter() - started)
