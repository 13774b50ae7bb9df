"""An emulator of Replicate's predictions HTTP API, as the replicate 1.0.7 client speaks it.

- Create: ``POST /v1/models/{owner}/{name}/predictions``, ``POST /v1/predictions`` (with
  ``version``, a version id or ``owner/name:id``), ``POST /v1/deployments/{owner}/{name}/
  predictions``; 201 and the prediction. ``Prefer: wait[=n]`` holds the answer up to n
  seconds (60 by default) for a terminal state; ``Cancel-After`` (``300``, ``5m``,
  ``1h30m``) aborts a prediction not started by then and cancels one still running.
- ``GET /v1/predictions/{id}``, ``POST /v1/predictions/{id}/cancel`` (200 and the prediction,
  unchanged when already over), ``GET /v1/predictions`` (newest first, ``next``/``previous``
  cursor URLs), ``GET /v1/predictions/{id}/stream`` (server-sent ``output`` and ``done``
  events once the prediction is over).
- ``Authorization: Bearer <token>`` (or ``Token``); errors are RFC 7807 bodies
  (``title``, ``detail``, ``status``), 422 for validation, 429 with ``Retry-After``.

Statuses: ``starting`` while queued, ``processing`` while running (``logs`` grows tqdm lines
that ``Prediction.progress`` parses), then ``succeeded``, ``failed`` (with ``error``),
``canceled`` or ``aborted`` (which replicate 1.0.7 cannot parse: its status is a Literal).
``webhook`` and ``webhook_events_filter`` on a create deliver the prediction, signed, on those
events (replicate_webhooks.py; faults a test can inject: webhook_faults.py); the signing
secret is at ``GET /v1/webhooks/default/secret``.

Submissions are counted per ``owner/name`` for models, ``deployments/owner/name`` for
deployments and the ``version`` string as sent (``versions`` if none); scripts use the same keys
(``"submit:owner/name"``). The poll route's script key is ``"status"``.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator
from http import HTTPStatus
from typing import Any, cast

import httpx
import orjson
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
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
from tests.emulators.media import files_route
from tests.emulators.replicate_state import ReplicateEmulator, ReplicatePrediction, version_of
from tests.emulators.replicate_webhooks import SECRET_PATH, parse_events_filter
from tests.emulators.webhooks import WebhookTargetError, check_target

__all__ = ["ReplicateEmulator", "ReplicatePrediction", "create_replicate_app"]

_TITLES = {
    401: "Unauthenticated",
    402: "Insufficient credit",
    403: "Forbidden",
    404: "Not found",
    422: "Input validation failed",
    429: "Too many requests",
}
_DURATION = re.compile(r"^(?:(\d+(?:\.\d+)?)h)?(?:(\d+(?:\.\d+)?)m)?(?:(\d+(?:\.\d+)?)s)?$")


def problem(
    status: int, detail: str, headers: dict[str, str] | None = None, **extra: Any
) -> Response:
    """An RFC 7807 error body as Replicate sends them."""
    try:
        phrase = HTTPStatus(status).phrase
    except ValueError:
        phrase = "Error"
    body = {"title": _TITLES.get(status, phrase), "detail": detail, "status": status, **extra}
    return json_response(body, status, headers)


def throttled(seconds: int) -> Response:
    detail = f"Request was throttled. Expected available in {seconds} second(s)."
    return problem(429, detail, {"Retry-After": str(seconds)})


def invalid_input(field: str, description: str, kind: str = "required") -> Response:
    fields = [{"type": kind, "field": field, "description": description}]
    return problem(422, f"- {field}: {description}\n", invalid_fields=fields)


def _render_error(script: Scripted) -> Response:
    status = script.status
    if status == 429:
        return throttled(script.retry_after if script.retry_after is not None else 1)
    headers = {} if script.retry_after is None else {"Retry-After": str(script.retry_after)}
    if status == 422:
        return problem(422, script.message or "- input: invalid input\n")
    return problem(status, script.message or f"Scripted {status}", headers)


def parse_duration(text: str) -> float:
    """``Cancel-After``: seconds (``300``) or Go-style ``1h30m45s``."""
    text = text.strip()
    try:
        return float(text)
    except ValueError:
        pass
    match = _DURATION.match(text)
    if not text or match is None:
        raise ValueError(f"not a duration: {text!r}")
    hours, minutes, seconds = (float(g) if g else 0.0 for g in match.groups())
    return hours * 3600 + minutes * 60 + seconds


def parse_prefer_wait(header: str | None) -> int | None:
    for token in (header or "").split(","):
        name, _, value = token.strip().partition("=")
        if name == "wait":
            return min(60, max(1, int(value))) if value.strip().isdigit() else 60
    return None


def _state(request: Request) -> ReplicateEmulator:
    return cast(ReplicateEmulator, request.app.state.emulator)


def _authorised(request: Request) -> bool:
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    return scheme in ("Bearer", "Token") and bool(token.strip())


_UNAUTHENTICATED = (401, "You did not pass a valid authentication token")


async def _create(request: Request, key: str | None, model: str | None) -> Response:
    state = _state(request)
    received = state.now()
    parsed, body = await read_json(request)
    if key is None:  # POST /v1/predictions: the version is the model
        version = body.get("version") if isinstance(body, dict) else None
        key = version if isinstance(version, str) and version else "versions"
    script: Scripted | None = None
    prediction: ReplicatePrediction | None = None
    if not _authorised(request):
        response = problem(*_UNAUTHENTICATED)
    else:
        state.log.submits_received[key] += 1
        script = state.behaviour.next_script((f"submit:{key}", "submit"))
        scripted = None if script is None else await state.answer_script(script, _render_error)
        if scripted is not None:
            response = scripted
        elif (wait_for := state.throttle()) is not None:
            response = throttled(wait_for)
        else:
            accepted = _accept(request, state, key, model, parsed, body)
            if isinstance(accepted, Response):
                response = accepted
            else:
                prediction = accepted
                subscription = state.webhooks.subscription(prediction.id)
                if subscription is not None and subscription.early is not None:
                    await state.webhooks.deliver_now(subscription)  # before the 201 goes out
                response = await _answer_created(request, state, prediction)
    state.log.record(
        request,
        route="submit",
        status=response.status_code,
        received_at=received,
        app=key,
        body=body,
        request_id=None if prediction is None else prediction.id,
        scripted=script,
    )
    return response


def _accept(
    request: Request,
    state: ReplicateEmulator,
    key: str,
    model: str | None,
    parsed: bool,
    body: Any,
) -> Response | ReplicatePrediction:
    """The validation error, or the new prediction."""
    if not parsed or not isinstance(body, dict):
        return invalid_input("(root)", "expected a JSON object")
    arguments = body.get("input")
    if not isinstance(arguments, dict):
        return invalid_input("input", "input is required and must be an object")
    if model is None:
        version = body.get("version")
        if not isinstance(version, str) or not version:
            return invalid_input("version", "version is required")
        name, _, version_id = version.rpartition(":")
        model, version = (name or "emulator/unknown-model"), version_id
    else:
        version = version_of(key)
    for name in state.behaviour.required_inputs:
        if name not in arguments:
            return invalid_input(f"input.{name}", f"{name} is required")
    webhook = body.get("webhook")
    events: frozenset[str] = frozenset()
    if webhook is not None:
        try:
            check_target(webhook)
        except WebhookTargetError as exc:
            return invalid_input("webhook", f"webhook {exc}", "format")
        try:
            events = parse_events_filter(body.get("webhook_events_filter"))
        except ValueError as exc:
            return invalid_input("webhook_events_filter", str(exc), "enum")
    cancel_after: float | None = None
    if header := request.headers.get("cancel-after"):
        try:
            cancel_after = parse_duration(header)
        except ValueError:
            return problem(400, f"Invalid Cancel-After header: {header!r}")
    return state.create(
        key=key,
        model=model,
        version=version,
        input=arguments,
        base_url=str(request.base_url),
        cancel_after=cancel_after,
        webhook=webhook,
        webhook_events=events,
    )


async def _answer_created(
    request: Request, state: ReplicateEmulator, prediction: ReplicatePrediction
) -> Response:
    headers: dict[str, str] = {}
    wait = parse_prefer_wait(request.headers.get("prefer"))
    if wait is not None:
        headers["Preference-Applied"] = f"wait={wait}"
        remaining = prediction.timeline.ended_at() - state.now()
        if remaining > 0:
            # A plain sleep: 10,000 waiters on one shutdown event would cost O(n) each.
            await asyncio.sleep(min(remaining, wait))
    return json_response(state.to_json(prediction), 201, headers)


async def create_for_model(request: Request) -> Response:
    name = f"{request.path_params['owner']}/{request.path_params['name']}"
    return await _create(request, name, name)


async def create_for_deployment(request: Request) -> Response:
    name = f"{request.path_params['owner']}/{request.path_params['name']}"
    return await _create(request, f"deployments/{name}", name)


async def create_for_version(request: Request) -> Response:
    return await _create(request, None, None)


async def _guard(request: Request, state: ReplicateEmulator, route: str) -> Response | None:
    """Auth and scripts for the non-create routes; None lets the request through."""
    if not _authorised(request):
        return problem(*_UNAUTHENTICATED)
    script = state.behaviour.next_script((route,))
    if script is None:
        return None
    request.state.script = script
    return await state.answer_script(script, _render_error)


def _prediction_route(route: str) -> Route:
    async def handle(request: Request) -> Response:
        state = _state(request)
        received = state.now()
        prediction_id = request.path_params["prediction_id"]
        prediction = state.predictions.get(prediction_id)
        response = await _guard(request, state, route)
        if response is None:
            if prediction is None:
                response = problem(404, "Prediction not found")
            elif route == "status":
                response = json_response(state.to_json(prediction))
            elif route == "cancel":
                state.cancel(prediction)
                response = json_response(state.to_json(prediction))
            else:
                response = _stream(state, prediction)
        state.log.record(
            request,
            route=route,
            status=response.status_code,
            received_at=received,
            app=None if prediction is None else prediction.key,
            request_id=prediction_id,
            scripted=getattr(request.state, "script", None),
        )
        return response

    path, method = {
        "status": ("/v1/predictions/{prediction_id}", "GET"),
        "cancel": ("/v1/predictions/{prediction_id}/cancel", "POST"),
        "stream": ("/v1/predictions/{prediction_id}/stream", "GET"),
    }[route]
    return Route(path, handle, methods=[method])


def _stream(state: ReplicateEmulator, prediction: ReplicatePrediction) -> Response:
    async def events() -> AsyncIterator[bytes]:
        remaining = prediction.timeline.ended_at() - state.now()
        if remaining > 0:
            await asyncio.sleep(remaining)
        data = state.to_json(prediction)
        if data["status"] == "succeeded":
            output = data["output"]
            for item in output if isinstance(output, list) else [output]:
                yield f"event: output\ndata: {item}\n\n".encode()
        elif data["error"]:
            yield b"event: error\ndata: " + orjson.dumps({"detail": data["error"]}) + b"\n\n"
        yield b"event: done\ndata: {}\n\n"

    return StreamingResponse(events(), media_type="text/event-stream")


async def list_predictions(request: Request) -> Response:
    state = _state(request)
    received = state.now()
    response = await _guard(request, state, "list")
    if response is None:
        cursor = request.query_params.get("cursor")
        if cursor is not None and not cursor.isdigit():
            response = problem(400, f"Invalid cursor: {cursor!r}")
        else:
            page = state.page(None if cursor is None else int(cursor), str(request.base_url))
            response = json_response(page)
    state.log.record(
        request,
        route="list",
        status=response.status_code,
        received_at=received,
        scripted=getattr(request.state, "script", None),
    )
    return response


async def webhook_secret(request: Request) -> Response:
    if not _authorised(request):
        return problem(*_UNAUTHENTICATED)
    return json_response({"key": _state(request).signer.secret})


def create_replicate_app(
    behaviour: Behaviour | None = None,
    *,
    clock: Clock | None = None,
    webhook_transport: httpx.AsyncBaseTransport | None = None,
) -> Starlette:
    """A Replicate emulator; its state is ``app.state.emulator`` (a ``ReplicateEmulator``)."""
    state = ReplicateEmulator(behaviour, clock, webhook_transport=webhook_transport)
    routes = [
        *control_routes(state),
        files_route,
        Route(SECRET_PATH, webhook_secret, methods=["GET"]),
        Route("/v1/models/{owner}/{name}/predictions", create_for_model, methods=["POST"]),
        Route(
            "/v1/deployments/{owner}/{name}/predictions", create_for_deployment, methods=["POST"]
        ),
        Route("/v1/predictions", create_for_version, methods=["POST"]),
        Route("/v1/predictions", list_predictions, methods=["GET"]),
        _prediction_route("status"),
        _prediction_route("cancel"),
        _prediction_route("stream"),
    ]
    app = Starlette(routes=routes, lifespan=lifespan_for(state))
    app.state.emulator = state
    return app
