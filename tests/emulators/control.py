"""What both emulators share: their state object and the ``/_emulator/*`` control endpoints.

A test drives an emulator through its state object (``app.state.emulator``) when it runs
in-process, or over HTTP when it runs in another process:

- ``GET``/``POST /_emulator/behaviour``: read or partly update the ``Behaviour``;
- ``POST /_emulator/script`` ``{"route": "submit", "responses": [500, "ok"]}``: queue answers;
- ``GET /_emulator/requests[?route=&app=]``: the request log and the submission counts;
- ``GET /_emulator/webhooks[?job=&event=]``: the webhook deliveries attempted (webhooks.py);
- ``POST /_emulator/reset``: forget jobs and log, back to the behaviour given at creation;
- ``GET /_emulator/health``: for waiting until an emulator in another process is up.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Callable, Mapping
from typing import Any

import orjson
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from tests.emulators.behaviour import Behaviour, BehaviourError, Scripted
from tests.emulators.requestlog import LoggedRequest, RequestLog
from tests.emulators.timeline import Timeline
from tests.emulators.webhooks import WebhookDispatcher

__all__ = [
    "Behaviour",
    "BehaviourError",
    "Clock",
    "EmulatorState",
    "LoggedRequest",
    "RequestLog",
    "Scripted",
    "control_routes",
    "json_response",
    "lifespan_for",
    "read_json",
]

Clock = Callable[[], float]
ErrorRenderer = Callable[[Scripted], Response]


def json_response(
    data: Any, status: int = 200, headers: Mapping[str, str] | None = None
) -> Response:
    """A JSON response serialised with orjson (the emulators answer a lot of polls)."""
    return Response(orjson.dumps(data), status, dict(headers or {}), "application/json")


class EmulatorState:
    """What both emulators share; each subclass adds its own jobs."""

    name = "emulator"
    webhooks: WebhookDispatcher | None = None

    def __init__(self, behaviour: Behaviour | None = None, clock: Clock | None = None) -> None:
        self._initial = (behaviour or Behaviour()).copy()
        self.behaviour = self._initial.copy()
        self.clock: Clock = clock or time.time
        self.log = RequestLog()
        self._closing = asyncio.Event()

    def now(self) -> float:
        return self.clock()

    def configure(self, **changes: Any) -> Behaviour:
        self.behaviour.update(changes)
        return self.behaviour

    def script(self, route: str, *responses: object) -> None:
        """``state.script("submit", 500, 500, "ok")``: the next three submits answer so."""
        self.behaviour.add_script(route, *responses)

    def reset(self) -> None:
        """Forget every job and logged request; go back to the behaviour given at creation."""
        self.behaviour.restore(self._initial)
        self.log.clear()
        self.clear_jobs()
        if self.webhooks is not None:
            self.webhooks.reset()

    def clear_jobs(self) -> None:
        """Subclasses drop their jobs here."""

    def requests(self, route: str | None = None, app: str | None = None) -> list[LoggedRequest]:
        return self.log.entries(route, app)

    def submit_count(self, app: str | None = None, *, accepted_only: bool = True) -> int:
        return self.log.submit_count(app, accepted_only=accepted_only)

    def plan(self, fails: bool, deadline_after: float | None = None) -> Timeline:
        now = self.now()
        started = now + self.behaviour.queue_time
        return Timeline(
            created=now,
            started=started,
            finished=started + self.behaviour.latency,
            fails=fails,
            deadline=None if deadline_after is None else now + deadline_after,
        )

    async def answer_script(self, script: Scripted, render_error: ErrorRenderer) -> Response | None:
        """The scripted response, or None to let the request through (after any hang)."""
        if script.kind == "timeout":
            hang = (
                self.behaviour.hang_seconds if script.hang_seconds is None else script.hang_seconds
            )
            await self.hang(hang)
        if script.body is not None and script.kind != "ok":
            media_type = script.content_type or "application/json"
            return Response(script.body, script.status, media_type=media_type)
        if script.is_error:
            return render_error(script)
        if script.kind == "malformed":
            return Response(
                "<html><body>upstream glitch</body></html>", 200, media_type="text/html"
            )
        if script.kind == "wrong_shape":
            return json_response({"unexpected": "shape"})
        return None

    async def hang(self, seconds: float) -> None:
        """Sleep, but wake up when the app shuts down so a hung request never blocks it."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._closing.wait(), timeout=seconds)

    def close(self) -> None:
        self._closing.set()

    async def aclose(self) -> None:
        """Wake hung requests and stop the webhook deliveries still in flight."""
        self.close()
        if self.webhooks is not None:
            await self.webhooks.aclose()


def lifespan_for(
    state: EmulatorState,
) -> Callable[[Starlette], contextlib.AbstractAsyncContextManager[None]]:
    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        state._closing = asyncio.Event()
        try:
            yield
        finally:
            await state.aclose()

    return lifespan


def control_routes(state: EmulatorState) -> list[Route]:
    """``/_emulator/*``: the same controls over HTTP, for an emulator in another process."""

    async def get_behaviour(request: Request) -> Response:
        return json_response(state.behaviour.to_json())

    async def set_behaviour(request: Request) -> Response:
        try:
            changes = orjson.loads(await request.body())
            if not isinstance(changes, dict):
                raise BehaviourError("expected a JSON object")
            state.configure(**changes)
        except (orjson.JSONDecodeError, BehaviourError) as exc:
            return json_response({"detail": str(exc)}, 400)
        return json_response(state.behaviour.to_json())

    async def add_script(request: Request) -> Response:
        try:
            data = orjson.loads(await request.body())
            if not isinstance(data, dict) or not isinstance(data.get("route"), str):
                raise BehaviourError('expected {"route": str, "responses": [...]}')
            state.script(data["route"], *data.get("responses", []))
        except (orjson.JSONDecodeError, BehaviourError, TypeError) as exc:
            return json_response({"detail": str(exc)}, 400)
        return json_response(state.behaviour.to_json())

    async def get_requests(request: Request) -> Response:
        params = request.query_params
        entries = state.requests(params.get("route"), params.get("app"))
        return json_response(
            {
                "requests": [e.to_json() for e in entries],
                "submits_received": dict(state.log.submits_received),
                "submits_accepted": dict(state.log.submits_accepted),
            }
        )

    async def get_webhooks(request: Request) -> Response:
        params = request.query_params
        webhooks = state.webhooks
        if webhooks is None:
            return json_response({"deliveries": [], "pending": 0})
        attempts = webhooks.deliveries(params.get("job"), params.get("event"))
        pending = webhooks.pending
        return json_response({"deliveries": [a.to_json() for a in attempts], "pending": pending})

    async def reset(request: Request) -> Response:
        state.reset()
        return json_response({"ok": True})

    async def health(request: Request) -> Response:
        return json_response({"ok": True, "emulator": state.name})

    return [
        Route("/_emulator/behaviour", get_behaviour, methods=["GET"]),
        Route("/_emulator/behaviour", set_behaviour, methods=["POST"]),
        Route("/_emulator/script", add_script, methods=["POST"]),
        Route("/_emulator/requests", get_requests, methods=["GET"]),
        Route("/_emulator/webhooks", get_webhooks, methods=["GET"]),
        Route("/_emulator/reset", reset, methods=["POST"]),
        Route("/_emulator/health", health, methods=["GET"]),
    ]


async def read_json(request: Request) -> tuple[bool, Any]:
    """(True, value) for a JSON body, (False, raw text) otherwise."""
    raw = await request.body()
    try:
        return True, orjson.loads(raw) if raw else None
    except orjson.JSONDecodeError:
        return False, raw.decode("utf-8", "replace")
