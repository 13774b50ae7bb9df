"""``GET /v1/jobs/{id}/events``: a job's changes as Server-Sent Events.

The stream opens with the job as it is now (event ``status``), then sends ``status`` when the
status changes and ``progress`` when only the progress or queue position does, and ends with
the terminal event (``completed``, ``failed`` or ``cancelled``). Every event's ``data`` is the
job body of ``GET /v1/jobs/{id}``. Event ids grow with each change of the job, so a client that
reconnects with ``Last-Event-ID`` after missing the end still receives the terminal event,
and one that had already received it gets an empty stream that ends at once.
"""

from __future__ import annotations

import re
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route

from gateway.api.common import principal
from gateway.jobs import Job
from gateway.service import JobService
from gateway.waiting import Waiting

KEEPALIVE_SECONDS = 15.0
#: what ``event_id`` makes: 20 ASCII digits (``isdigit`` would take "²" too)
_EVENT_ID = re.compile(r"[0-9]{20}")


def event_id(job: Job) -> str:
    """Grows with every change of the job; fixed-width, so ids compare as strings."""
    return f"{int((job.updated_at or job.created_at) * 1_000_000):020d}"


def _frame(event: str, job_id: str, data: dict[str, Any]) -> bytes:
    return f"id: {job_id}\nevent: {event}\ndata: ".encode() + orjson.dumps(data) + b"\n\n"


class _HeldStream(StreamingResponse):
    """An event stream that holds one of its key's wait slots until it ends, however it
    ends (finished, client gone, or never started)."""

    def __init__(self, release: Callable[[], None], *args: Any, **kwargs: Any) -> None:
        self.release = release
        super().__init__(*args, **kwargs)

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            self.release()


class JobEventsAPI:
    def __init__(
        self,
        service: JobService,
        waiting: Waiting,
        render: Callable[[Job], dict[str, Any]],
        *,
        max_seconds: float,
        keepalive: float = KEEPALIVE_SECONDS,
    ) -> None:
        self.service = service
        self.events = waiting.events
        self.waiting = waiting
        self.render = render
        self.max_seconds = max_seconds
        self.keepalive = keepalive

    def routes(self) -> list[Route]:
        return [Route("/v1/jobs/{job_id}/events", self.stream, methods=["GET"])]

    async def stream(self, request: Request) -> Response:
        who = await principal(request)
        job = await self.service.get(who.owner, request.path_params["job_id"])
        last_seen = request.headers.get("last-event-id", "")
        if not _EVENT_ID.fullmatch(last_seen):
            last_seen = ""  # not an id this server issued: start over
        release = self.waiting.take(who.owner)  # 429 past the key's cap of open waits
        return _HeldStream(
            release,
            self._events(job, who.owner, last_seen),
            media_type="text/event-stream",
            headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
        )

    async def _events(self, job: Job, owner: str, last_seen: str) -> AsyncIterator[bytes]:
        deadline = time.monotonic() + self.max_seconds
        sent: tuple[Any, ...] | None = None
        with self.events.watch(job.id) as watch:
            current = await self.service.get(owner, job.id)  # after watching: nothing missed
            while True:
                eid = event_id(current)
                shape = (current.status, current.progress, current.queue_position)
                if shape != sent and eid > last_seen:
                    if current.status.terminal:
                        name = current.status.value.lower()
                    elif sent is None or sent[0] != current.status:
                        name = "status"
                    else:
                        name = "progress"
                    yield _frame(name, eid, self.render(current))
                    sent = shape
                if current.status.terminal:
                    return
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return
                if await watch.changed(min(self.keepalive, remaining)):
                    current = await self.service.get(owner, job.id)
                else:
                    yield b": keepalive\n\n"
