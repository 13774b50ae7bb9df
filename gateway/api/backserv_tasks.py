"""The Back.Serv task face (seed: backserv-api.md), for clients of the older Back.Serv API.

``POST /submit_task`` -> 202 ``{ticket_id, serv_name, status}``; ``GET /query_task/{id}`` ->
``{status, result_info, error_info, started_at, completed_at}``; ``POST /cancel_task/{id}``
-> ``{status: "Cancelled", message}``. A ticket is a job: ``ticket_id`` is the job id, so
``GET /v1/jobs/{ticket_id}`` shows the same job with the same key.

Each ``task_type`` runs the catalog model configured for it (``BACKSERV_SUBMIT_TASK_MODELS``,
checked at start-up); ``task_params`` is that kind's canonical input and ``user_id`` is kept in
``job.meta["user_id"]``. Every error of these routes is ``{"error", "message"}`` (the
document's shape, not the OpenAI envelope of the other faces). With
``BACKSERV_SUBMIT_TASK_AUTH=none`` (a trusted network) no key is asked for and every request
acts as ``BACKSERV_SUBMIT_TASK_OWNER``.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Awaitable, Callable, Mapping
from datetime import UTC, datetime
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from gateway.api.common import body_str, json, principal, read_json
from gateway.api.jobs import render_result
from gateway.auth import Principal
from gateway.catalog import Catalog, CatalogModel
from gateway.errors import ConfigError, Conflict, GatewayError, InvalidRequest, NotFound
from gateway.idempotency import read_idempotency, replay_headers
from gateway.jobs import Job, Status
from gateway.results import ResultLinks
from gateway.service import JobRequest, JobService

log = logging.getLogger("backserv.api.backserv_tasks")

#: task_type -> the kind of model that runs it
TASK_KINDS = {
    "image_creation": "image",
    "image_upscale": "upscale",
    "face_swap": "face_swap",
    "video_creation": "video",
}

#: the model each task_type runs unless BACKSERV_SUBMIT_TASK_MODELS names another
DEFAULT_TASK_MODELS = {
    "image_creation": "sandbox-image",
    "image_upscale": "sandbox-upscale",
    "face_swap": "sandbox-face-swap",
    "video_creation": "sandbox-video",
}

#: the document's status words, from the core statuses
STATUS_WORDS = {
    Status.QUEUED: "Queueing",
    Status.PROCESSING: "Processing",
    Status.COMPLETED: "Completed",
    Status.FAILED: "Failed",
    Status.CANCELLED: "Cancelled",
}

#: the ``error`` word of each HTTP status these routes answer with (others: by class)
ERROR_WORDS = {
    400: "Bad Request",
    401: "Unauthorized",
    403: "Forbidden",
    404: "Not Found",
    405: "Method Not Allowed",
    409: "Conflict",
    410: "Gone",
    413: "Payload Too Large",
    415: "Unsupported Media Type",
    422: "Unprocessable Entity",
    429: "Too Many Requests",
    500: "Internal Server Error",
    502: "Bad Gateway",
    503: "Service Unavailable",
    504: "Gateway Timeout",
}

_FIELDS = ("task_type", "task_params", "user_id")
_METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE", "OPTIONS")
MAX_USER_ID_LENGTH = 256
CANCELLED_MESSAGE = "Task successfully cancelled"

Endpoint = Callable[[Request], Awaitable[Response]]


def error_response(status: int, message: str, headers: dict[str, str] | None = None) -> Response:
    word = ERROR_WORDS.get(status, "Bad Request" if status < 500 else "Internal Server Error")
    return json({"error": word, "message": message}, status, headers)


def _document_errors(endpoint: Endpoint) -> Endpoint:
    """Render every error of ``endpoint`` in the document's ``{"error", "message"}`` shape."""

    @functools.wraps(endpoint)
    async def wrapped(request: Request) -> Response:
        try:
            return await endpoint(request)
        except GatewayError as exc:
            status = exc.status_code
            if status >= 500:
                log.error("%s %s failed: %s", request.method, request.url.path, exc.message)
            return error_response(status, exc.message, exc.headers())
        except Exception:
            log.exception("unhandled error on %s %s", request.method, request.url.path)
            return error_response(500, GatewayError.default_message)

    return wrapped


def _iso(timestamp: float | None) -> str | None:
    """ISO 8601 in UTC with milliseconds (``2025-01-31T12:00:00.000+00:00``)."""
    if timestamp is None:
        return None
    return datetime.fromtimestamp(timestamp, UTC).isoformat(timespec="milliseconds")


def render_task(job: Job, links: ResultLinks) -> dict[str, Any]:
    """The body of ``GET /query_task/{id}``."""
    result = render_result(job, links) if job.status is Status.COMPLETED else None
    return {
        "status": STATUS_WORDS[job.status],
        "result_info": result.get("url") if result else None,
        "error_info": job.error.get("message") if job.error else None,
        "started_at": _iso(job.started_at),
        "completed_at": _iso(job.completed_at),
    }


def serv_name(job: Job, model: CatalogModel) -> str:
    """The route that ran the job, once one has; before that, the model's primary route."""
    return job.attempts[-1].route if job.attempts else model.routes[0].name


def task_models(catalog: Catalog, configured: Mapping[str, str]) -> dict[str, CatalogModel]:
    """The model of each task type (``task_type -> model``).

    A configured model must exist and be of the task's kind, or this is a ``ConfigError``
    that names the setting. A task type not configured runs its default when the catalog
    has it (and of that kind), else the catalog's first model of its kind; a task type with
    neither is left out, and its submissions are refused.
    """
    where = f"BACKSERV_SUBMIT_TASK_MODELS (catalog {catalog.source})"
    unknown = sorted(set(configured) - set(TASK_KINDS))
    if unknown:
        raise ConfigError(
            f"{where}: unknown task type '{unknown[0]}' (known: {', '.join(TASK_KINDS)})."
        )
    models: dict[str, CatalogModel] = {}
    for task_type, kind in TASK_KINDS.items():
        model_id = configured.get(task_type)
        if model_id is not None:
            models[task_type] = catalog.configured(
                model_id, kind, where, f"task type '{task_type}'"
            )
        elif (model := catalog.first_of_kind(kind, DEFAULT_TASK_MODELS[task_type])) is not None:
            models[task_type] = model
    return models


class BackServTasksAPI:
    def __init__(
        self,
        service: JobService,
        links: ResultLinks,
        max_body: int,
        *,
        models: Mapping[str, str] | None = None,
        auth: str = "key",
        trusted_owner: str = "trusted-network",
    ) -> None:
        if auth not in ("key", "none"):
            raise ConfigError(f"BACKSERV_SUBMIT_TASK_AUTH must be 'key' or 'none', not {auth!r}.")
        self.service = service
        self.links = links
        self.max_body = max_body
        self.models = task_models(service.catalog, models or {})
        served = ", ".join(f"{t} -> {m.id}" for t, m in self.models.items())
        log.info("Back.Serv task types: %s", served or "none")
        self.auth = auth
        self.trusted_owner = trusted_owner

    def routes(self) -> list[Route]:
        routes = []
        for path, endpoint, method in (
            ("/submit_task", self.submit_task, "POST"),
            ("/query_task/{ticket_id}", self.query_task, "GET"),
            ("/cancel_task/{ticket_id}", self.cancel_task, "POST"),
        ):
            routes.append(Route(path, _document_errors(endpoint), methods=[method]))
            # any other method: a 405 in the document's shape, not the router's own
            others = [m for m in _METHODS if m != method]
            routes.append(Route(path, _method_not_allowed(path, method), methods=others))
        return routes

    async def _owner(self, request: Request) -> str:
        return (await self._caller(request)).owner

    async def _caller(self, request: Request) -> Principal:
        """The key's principal; with ``auth = "none"``, the trusted owner (default limits)."""
        if self.auth == "none":
            return Principal(self.trusted_owner)
        return await principal(request)

    async def _get(self, owner: str, ticket_id: str) -> Job:
        try:
            return await self.service.get(owner, ticket_id)
        except NotFound:
            raise NotFound(f"No task with ticket_id '{ticket_id}'.") from None

    async def submit_task(self, request: Request) -> Response:
        caller = await self._caller(request)
        body = await read_json(request, self.max_body)
        for key in body:
            if key not in _FIELDS:
                raise InvalidRequest(
                    f"Unknown parameter '{key}'. POST /submit_task takes 'task_type', "
                    f"'task_params' and 'user_id'."
                )
        task_type = body_str(body, "task_type") or ""
        if task_type not in TASK_KINDS:
            raise InvalidRequest(
                f"Invalid 'task_type' {task_type!r}: must be one of {', '.join(TASK_KINDS)}."
            )
        model = self.models.get(task_type)
        if model is None:
            raise InvalidRequest(
                f"The task type '{task_type}' is not available on this server: its catalog has "
                f"no {TASK_KINDS[task_type]} model."
            )
        params = body.get("task_params")
        if params is None:
            raise InvalidRequest("Missing required parameter 'task_params'.")
        if not isinstance(params, dict):
            raise InvalidRequest("Invalid 'task_params': must be a JSON object.")
        user_id = body_str(body, "user_id") or ""
        if not user_id.strip() or len(user_id) > MAX_USER_ID_LENGTH:
            raise InvalidRequest(
                f"Invalid 'user_id': must be a non-empty string of at most "
                f"{MAX_USER_ID_LENGTH} characters."
            )
        idem = read_idempotency(request.headers, request.scope["path"], body)
        job, replayed = await self.service.submit(
            JobRequest(
                owner=caller.owner,
                limits=caller.limits,
                model=model,
                input=params,
                meta={"user_id": user_id},
                param_prefix="task_params.",
                idempotency=idem,
            )
        )
        return json(
            {
                "ticket_id": job.id,
                "serv_name": serv_name(job, model),
                "status": STATUS_WORDS[job.status],
            },
            202,
            {"Location": f"/query_task/{job.id}", **replay_headers(replayed)},
        )

    async def query_task(self, request: Request) -> Response:
        owner = await self._owner(request)
        job = await self._get(owner, request.path_params["ticket_id"])
        return json(render_task(job, self.links))

    async def cancel_task(self, request: Request) -> Response:
        owner = await self._owner(request)
        ticket_id = request.path_params["ticket_id"]
        try:
            job = await self.service.cancel(owner, ticket_id)
        except NotFound:
            raise NotFound(f"No task with ticket_id '{ticket_id}'.") from None
        except Conflict:
            latest = await self._get(owner, ticket_id)
            if latest.status.terminal:
                raise InvalidRequest(
                    f"Task '{ticket_id}' is already {STATUS_WORDS[latest.status]}; only "
                    f"Queueing or Processing tasks can be cancelled."
                ) from None
            raise InvalidRequest(
                f"Task '{ticket_id}' changed while it was being cancelled; try again."
            ) from None
        return json({"status": STATUS_WORDS[job.status], "message": CANCELLED_MESSAGE})


def _method_not_allowed(path: str, method: str) -> Endpoint:
    async def endpoint(request: Request) -> Response:
        return error_response(
            405,
            f"{request.method} is not allowed on {path}; use {method}.",
            {"Allow": method},
        )

    return endpoint
