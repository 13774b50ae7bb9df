"""Every response carries ``x-request-id``: the client's own (if sane) or a new one.

A pure ASGI middleware (no per-request Starlette objects), so it costs next to nothing on the
hot paths. The id is also put in ``scope["state"]["request_id"]`` and in a context variable
for log lines.
"""

from __future__ import annotations

import contextvars
import re
import secrets

from starlette.types import ASGIApp, Message, Receive, Scope, Send

HEADER = b"x-request-id"
_VALID = re.compile(rb"^[A-Za-z0-9._:-]{1,128}$")

current_request_id: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "request_id", default=None
)


def new_request_id() -> str:
    """``req_`` and 96 bits from the OS's CSPRNG (as job ids: ``gateway.jobs.new_job_id``)."""
    return f"req_{secrets.token_hex(12)}"


class RequestIdMiddleware:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        given = next((v for k, v in scope["headers"] if k == HEADER), None)
        rid = given.decode() if given is not None and _VALID.match(given) else new_request_id()
        scope.setdefault("state", {})["request_id"] = rid
        token = current_request_id.set(rid)
        raw = rid.encode()

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", ()), (HEADER, raw)]
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        finally:
            current_request_id.reset(token)
