"""An emulator of fal's queue HTTP API, as fal-client 1.0.3 speaks it.

- ``POST /{owner}/{app}[/{path}]`` submits (``Authorization: Key <key>``); the answer's URLs
  are built from the request's own base URL and drop the sub-path, as fal does.
- ``GET .../requests/{id}/status[?logs=1]``: ``IN_QUEUE`` (+``queue_position``) and
  ``IN_PROGRESS`` answer 202, ``COMPLETED`` (+``metrics.inference_time``, and ``error`` /
  ``error_type`` when the run failed) answers 200.
- ``GET .../requests/{id}`` replays the app's answer: 200 and the output, or the error status
  and body with ``X-Fal-Error-Type``; 400 while the request is not done.
- ``PUT .../requests/{id}/cancel``: 202 ``CANCELLATION_REQUESTED``, 400 ``ALREADY_COMPLETED``,
  404 ``NOT_FOUND``.

fal does not document what a cancelled request looks like afterwards; here it is
``COMPLETED`` with ``error_type: "request_cancelled"`` and its result a 400. A running request
stops at once unless ``Behaviour.cancel_stops_running`` is off (the app ignores the signal).
``X-Fal-Request-Timeout`` is a deadline to *start*: past it a queued request completes with
``error_type: "request_timeout"`` and its result is a 504 with ``X-Fal-Request-Timeout-Type``.
``?fal_webhook=<loopback URL>`` has the request's end POSTed there, signed (fal_webhooks.py;
faults a test can inject: webhook_faults.py); ``GET /.well-known/jwks.json`` is the key set.
"""

from __future__ import annotations

from http import HTTPStatus
from typing import Any, cast

import httpx
from starlette.applications import Starlette
from starlette.datastructures import Headers
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from tests.emulators.control import (
    Behaviour,
    Clock,
    Scripted,
    control_routes,
    json_response,
    lifespan_for,
    read_json,
)
from tests.emulators.fal_state import FalEmulator, FalFailure, FalJob
from tests.emulators.fal_webhooks import jwks_route
from tests.emulators.media import files_route
from tests.emulators.requestlog import headers_of_interest
from tests.emulators.webhooks import WebhookTargetError

__all__ = ["FalEmulator", "FalFailure", "FalJob", "create_fal_app"]

_TRUE = frozenset({"1", "true", "yes"})


def _state(request: Request) -> FalEmulator:
    return cast(FalEmulator, request.app.state.emulator)


def _render_error(script: Scripted) -> Response:
    try:
        default = HTTPStatus(script.status).phrase
    except ValueError:
        default = "Error"
    message = script.message or default
    body: dict[str, Any] = {"detail": message}
    if script.status == 422:
        body = {"detail": [{"loc": ["body"], "msg": message, "type": "value_error"}]}
    headers = {} if script.retry_after is None else {"Retry-After": str(script.retry_after)}
    return json_response(body, script.status, headers)


def _authorised(request: Request) -> bool:
    scheme, _, key = request.headers.get("authorization", "").partition(" ")
    return scheme == "Key" and bool(key.strip())


_UNAUTHORISED = {"detail": "Authentication is required: send 'Authorization: Key <FAL_KEY>'."}


def _start_timeout(headers: Headers) -> float | None:
    value = headers.get("x-fal-request-timeout")
    if value is None:
        return None
    timeout = float(value)
    if not timeout > 0:
        raise ValueError(value)
    return timeout


async def submit(request: Request) -> Response:
    state = _state(request)
    received = state.now()
    params = request.path_params
    app = f"{params['owner']}/{params['app']}"
    endpoint = f"{app}/{params['path']}" if params.get("path") else app
    parsed, body = await read_json(request)
    script: Scripted | None = None
    request_id: str | None = None
    if not _authorised(request):
        response = json_response(_UNAUTHORISED, 401)
    else:
        state.log.submits_received[endpoint] += 1
        script = state.behaviour.next_script((f"submit:{endpoint}", f"submit:{app}", "submit"))
        scripted = None if script is None else await state.answer_script(script, _render_error)
        response = scripted or await _accept(request, state, endpoint, parsed, body)
        if scripted is None and response.status_code == 200:
            request_id = response.headers["x-fal-request-id"]
    state.log.record(
        request,
        route="submit",
        status=response.status_code,
        received_at=received,
        app=endpoint,
        body=body,
        request_id=request_id,
        scripted=script,
    )
    return response


async def _accept(
    request: Request, state: FalEmulator, endpoint: str, parsed: bool, body: Any
) -> Response:
    if not parsed or not isinstance(body, dict):
        detail = [{"loc": ["body"], "msg": "expected a JSON object", "type": "type_error.dict"}]
        return json_response({"detail": detail}, 422)
    try:
        start_timeout = _start_timeout(request.headers)
    except ValueError:
        return json_response({"detail": "X-Fal-Request-Timeout must be a positive number"}, 400)
    webhook_url = request.query_params.get("fal_webhook")
    try:
        job = state.submit(
            endpoint,
            body,
            base_url=str(request.base_url),
            headers=headers_of_interest(request),
            start_timeout=start_timeout,
            webhook_url=webhook_url,
        )
    except WebhookTargetError as exc:
        detail = [{"loc": ["query", "fal_webhook"], "msg": str(exc), "type": "value_error"}]
        return json_response({"detail": detail}, 422)
    subscription = state.webhooks.subscription(job.request_id)
    if subscription is not None and subscription.early is not None:
        await state.webhooks.deliver_now(subscription)  # before this response goes out
    answer = {"request_id": job.request_id, **job.urls, "queue_position": job.queue_position}
    return json_response(answer, 200, {"x-fal-request-id": job.request_id})


async def _find_job(
    request: Request, state: FalEmulator, route: str, app: str
) -> tuple[FalJob | Response, Scripted | None]:
    """Auth, scripts and lookup shared by status, result and cancel."""
    if not _authorised(request):
        return json_response(_UNAUTHORISED, 401), None
    script = state.behaviour.next_script((f"{route}:{app}", route))
    if script is not None:
        scripted = await state.answer_script(script, _render_error)
        if scripted is not None:
            return scripted, script
    job = state.jobs.get(request.path_params["request_id"])
    if job is None or job.app != app:
        if route == "cancel":
            return json_response({"status": "NOT_FOUND"}, 404), script
        return json_response({"detail": "Request not found"}, 404), script
    return job, script


def _job_handler(route: str) -> Route:
    async def handle(request: Request) -> Response:
        state = _state(request)
        received = state.now()
        params = request.path_params
        app = f"{params['owner']}/{params['app']}"
        found, script = await _find_job(request, state, route, app)
        if isinstance(found, Response):
            response = found
        else:
            job_headers = {"x-fal-request-id": found.request_id}
            if route == "status":
                with_logs = request.query_params.get("logs", "0").lower() in _TRUE
                code, body, headers = state.status_of(found, with_logs)
            elif route == "result":
                code, body, headers = state.result_of(found)
            else:
                code, body = state.cancel(found)
                headers = {}
            response = json_response(body, code, {**headers, **job_headers})
        state.log.record(
            request,
            route=route,
            status=response.status_code,
            received_at=received,
            app=app,
            request_id=params["request_id"],
            scripted=script,
        )
        return response

    base = "/{owner}/{app}/requests/{request_id}"
    path, method = {
        "status": (f"{base}/status", "GET"),
        "result": (base, "GET"),
        "cancel": (f"{base}/cancel", "PUT"),
    }[route]
    return Route(path, handle, methods=[method])


def create_fal_app(
    behaviour: Behaviour | None = None,
    *,
    clock: Clock | None = None,
    webhook_transport: httpx.AsyncBaseTransport | None = None,
) -> Starlette:
    """A fal queue emulator; its state is ``app.state.emulator`` (a ``FalEmulator``)."""
    state = FalEmulator(behaviour, clock, webhook_transport=webhook_transport)
    routes = [
        *control_routes(state),
        files_route,
        jwks_route,
        _job_handler("status"),
        _job_handler("cancel"),
        _job_handler("result"),
        Route("/{owner}/{app}", submit, methods=["POST"]),
        Route("/{owner}/{app}/{path:path}", submit, methods=["POST"]),
    ]
    app = Starlette(routes=routes, lifespan=lifespan_for(state))
    app.state.emulator = state
    return app
