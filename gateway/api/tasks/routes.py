"""The Tasks API's routes, mounted at ``/api/v1/tasks`` as a sub-application.

A sub-application, so that every answer under the prefix (its 404 and 405 included) is in
the document's dialect (``errors.py``); mounted so that it gets every path under the prefix,
a newline in it included (``PrefixMount``). Requests carry a JWT (``jwt.py``); with no secret
configured every route answers 503 and says which setting is missing.
"""

from __future__ import annotations

import re
from typing import Any

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Mount, Route
from starlette.types import Receive, Scope, Send

from gateway.api.common import json, read_json
from gateway.api.tasks.create import TaskCreator, task_type_of_body
from gateway.api.tasks.errors import (
    NotConfigured,
    gateway_error_handler,
    http_error_handler,
    invalid,
)
from gateway.api.tasks.ids import job_id_of, parse_task_id, task_id_of
from gateway.api.tasks.jwt import Claims, JWTVerifier
from gateway.api.tasks.listing import MAX_LIMIT, MAX_SKIP, TaskFilter, list_tasks
from gateway.api.tasks.render import Renderer, task_type_of
from gateway.api.tasks.routing import ModelChooser
from gateway.api.tasks.schemas import JOB_STATUS, TASK_STATUS, TaskType
from gateway.api.tasks.update import requested_changes
from gateway.api.tasks.webhook_secret import TaskWebhookSecretAPI
from gateway.errors import Conflict, GatewayError, InvalidRequest, NotFound, PermissionDenied
from gateway.idempotency import replay_headers
from gateway.jobs import Job
from gateway.service import JobService
from gateway.webhooks.secrets import WebhookSecrets

PREFIX = "/api/v1/tasks"
_ORIGIN_FILTERS = ("origin_instance", "origin_zone", "origin_tenant_id")
_STATUSES = ", ".join(f"'{s}'" for s in JOB_STATUS)
_TASK_TYPES = ", ".join(f"'{t}'" for t in TaskType)


def _query_int(request: Request, name: str, default: int, lo: int, hi: int) -> int:
    raw = request.query_params.get(name)
    if raw is None:
        return default  # an empty value is no integer (as the document's FastAPI answers)
    try:
        value = int(raw)
    except ValueError:
        raise invalid(
            ("query", name),
            "Input should be a valid integer, unable to parse string as an integer",
            "int_parsing",
        ) from None
    if value < lo:
        message, kind = f"Input should be greater than or equal to {lo}", "greater_than_equal"
        raise invalid(("query", name), message, kind)
    if value > hi:
        message, kind = f"Input should be less than or equal to {hi}", "less_than_equal"
        raise invalid(("query", name), message, kind)
    return value


class PrefixMount(Mount):
    """A mount that takes every path under its prefix. Starlette's ``Mount`` matches the rest of
    the path with ``.*``, which stops at a newline: ``DELETE /api/v1/tasks/a%0Ab`` fell through to
    the app's own 404, in the OpenAI envelope the Tasks API never answers in."""

    def __init__(self, path: str, app: Starlette) -> None:
        super().__init__(path, app=app)
        self.path_regex = re.compile(self.path_regex.pattern, re.DOTALL)


class OtherMethods:
    """Every other method of a literal path that ``/{task_id}`` would match too: a 405 (whose
    Allow lists the path's methods), not ``PUT /{task_id}`` of a task named 'generation'."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        raise HTTPException(405)


class TasksAPI:
    """The Tasks API. ``verifier`` checks its JWTs (None: not configured, every route 503);
    ``chooser`` picks a task's model; ``renderer`` writes a job as a task."""

    def __init__(
        self,
        service: JobService,
        chooser: ModelChooser,
        renderer: Renderer,
        secrets: WebhookSecrets,
        *,
        verifier: JWTVerifier | None,
        max_body: int,
    ) -> None:
        self.service = service
        self.verifier = verifier
        self.creator = TaskCreator(service, chooser)
        self.renderer = renderer
        self.secrets = secrets
        self.max_body = max_body

    def routes(self) -> list[BaseRoute]:
        secret = TaskWebhookSecretAPI(self._claims, self.secrets)
        return [PrefixMount(PREFIX, self.app()), *secret.routes()]

    def app(self) -> Starlette:
        routes = [
            Route("/", self.create, methods=["POST"]),
            Route("/", self.list_all, methods=["GET"]),
            Route("/generation", self.create_generation, methods=["POST"]),
            Route("/generation", self.list_generation, methods=["GET"]),
            Route("/generation", OtherMethods()),
            Route("/generation/{task_id}", self.get_generation, methods=["GET"]),
            Route("/generation/{task_id}", self.update_generation, methods=["PUT"]),
            Route("/generation/{task_id}/cancel", self.cancel_generation, methods=["POST"]),
            Route("/{task_id}", self.get, methods=["GET"]),
            Route("/{task_id}", self.update, methods=["PUT"]),
            Route("/{task_id}", self.delete, methods=["DELETE"]),
            Route("/{task_id}/cancel", self.cancel, methods=["POST"]),
            Route("/{task_id}/cleanup", self.cleanup, methods=["POST"]),
        ]
        handlers: dict[Any, Any] = {
            GatewayError: gateway_error_handler,
            HTTPException: http_error_handler,
        }
        return Starlette(routes=routes, exception_handlers=handlers)

    # -- helpers ------------------------------------------------------------------------

    def _claims(self, request: Request) -> Claims:
        if self.verifier is None:
            raise NotConfigured(
                "The Tasks API is not configured: set BACKSERV_TASKS_JWT_SECRET (the HS256 "
                "secret its bearer tokens are signed with, at least 32 bytes)."
            )
        return self.verifier.authenticate(request.headers.get("authorization"))

    async def _body(self, request: Request) -> dict[str, Any]:
        try:
            return await read_json(request, self.max_body)
        except InvalidRequest as exc:
            if exc.code == "empty_body":
                raise invalid(("body",), "Field required", "missing") from None
            raise invalid(("body",), exc.message, "json_invalid") from None

    async def _job(self, request: Request, claims: Claims, *, generation: bool = False) -> Job:
        """The caller's task named in the path (a 404 for anyone else's)."""
        try:
            task_id = parse_task_id(request.path_params["task_id"])
        except ValueError:
            message = "Input should be a valid UUID"
            raise invalid(("path", "task_id"), message, "uuid_parsing") from None
        what = "Generation task" if generation else "Task"
        job_id = job_id_of(task_id)
        if job_id is None:
            raise NotFound(f"{what} not found")
        try:
            job = await self.service.get(claims.sub, job_id)
        except NotFound:
            raise NotFound(f"{what} not found") from None
        task_type = task_type_of(job)
        if (
            task_type is None
            or (claims.tenant is not None and job.meta.get("origin_tenant_id") != claims.tenant)
            or (generation and task_type is not TaskType.GENERATION)
        ):
            raise NotFound(f"{what} not found")
        return job

    async def _answer(self, job: Job, headers: dict[str, str] | None = None) -> Response:
        return json(await self.renderer.task(job), 200, headers)

    # -- create ---------------------------------------------------------------------------

    async def create(self, request: Request) -> Response:
        claims = self._claims(request)
        body = await self._body(request)
        return await self._create(request, claims, body, task_type_of_body(body))

    async def create_generation(self, request: Request) -> Response:
        claims = self._claims(request)
        body = await self._body(request)
        body.setdefault("task_type", TaskType.GENERATION.value)
        task_type = task_type_of_body(body)
        if task_type is not TaskType.GENERATION:
            raise invalid(("body", "task_type"), "Input should be 'GENERATION'", "literal_error")
        return await self._create(request, claims, body, task_type)

    async def _create(
        self, request: Request, claims: Claims, body: dict[str, Any], task_type: TaskType
    ) -> Response:
        job, replayed = await self.creator.create(
            claims, body, task_type, headers=request.headers, path=request.url.path
        )
        return await self._answer(job, replay_headers(replayed))

    # -- read -----------------------------------------------------------------------------

    async def get(self, request: Request) -> Response:
        claims = self._claims(request)
        return await self._answer(await self._job(request, claims))

    async def get_generation(self, request: Request) -> Response:
        claims = self._claims(request)
        return await self._answer(await self._job(request, claims, generation=True))

    async def list_all(self, request: Request) -> Response:
        return await self._list(request, generation=False)

    async def list_generation(self, request: Request) -> Response:
        return await self._list(request, generation=True)

    async def _list(self, request: Request, *, generation: bool) -> Response:
        claims = self._claims(request)
        query = request.query_params
        skip = _query_int(request, "skip", 0, 0, MAX_SKIP)
        limit = _query_int(request, "limit", 100, 0, MAX_LIMIT)
        status = None
        if (raw := query.get("status")) is not None:  # empty is no status: refused
            status = JOB_STATUS.get(raw.upper())
            if status is None:
                raise invalid(("query", "status"), f"Input should be {_STATUSES}", "enum")
        task_type = TaskType.GENERATION if generation else None
        if not generation and (raw := query.get("task_type")) is not None:
            if raw.upper() not in TaskType.__members__:
                raise invalid(("query", "task_type"), f"Input should be {_TASK_TYPES}", "enum")
            task_type = TaskType(raw.upper())
        names = (*_ORIGIN_FILTERS, "workflow_id") if generation else _ORIGIN_FILTERS
        meta = {name: query[name] for name in names if query.get(name)}
        if claims.tenant is not None and (
            meta.setdefault("origin_tenant_id", claims.tenant) != claims.tenant
        ):
            raise PermissionDenied(
                f"This token acts for tenant '{claims.tenant}'; it cannot list another's."
            )
        jobs = await list_tasks(
            self.service, claims.sub, TaskFilter(status, task_type, meta), skip=skip, limit=limit
        )
        return json([await self.renderer.task(job) for job in jobs])

    # -- change ---------------------------------------------------------------------------

    async def cancel(self, request: Request) -> Response:
        claims = self._claims(request)
        job = await self._job(request, claims)
        return await self._answer(await self._cancel(claims, job))

    async def cancel_generation(self, request: Request) -> Response:
        claims = self._claims(request)
        job = await self._job(request, claims, generation=True)
        return await self._answer(await self._cancel(claims, job))

    async def _cancel(self, claims: Claims, job: Job) -> Job:
        try:
            return await self.service.cancel(claims.sub, job.id)
        except Conflict:
            latest = await self.service.get(claims.sub, job.id)
            raise Conflict(
                f"Task {task_id_of(job.id)} is already {TASK_STATUS[latest.status]}; it cannot "
                "be cancelled."
            ) from None

    async def update(self, request: Request) -> Response:
        return await self._update(request, generation=False)

    async def update_generation(self, request: Request) -> Response:
        return await self._update(request, generation=True)

    async def _update(self, request: Request, *, generation: bool) -> Response:
        claims = self._claims(request)
        job = await self._job(request, claims, generation=generation)
        body = await self._body(request)
        current = await self.renderer.task(job) or {}
        task_type = TaskType(current["task_type"])
        changes = requested_changes(task_type, body, current, generation=generation)
        if changes.reroutes:  # first: it checks nothing changed the job since it was read
            job = await self.creator.reroute(claims, job, task_type, changes)
        if changes.priority is not None:
            job = await self.service.set_priority(claims.sub, job.id, changes.priority)
        if changes.config is not None:
            job = await self.service.annotate(
                claims.sub, job.id, ("task", "config"), changes.config
            )
        if changes.cancel:
            job = await self._cancel(claims, job)
        return await self._answer(job)

    async def cleanup(self, request: Request) -> Response:
        """Delete the task's files; keep its record, marked (``is_deleted``, ``deleted_at``)."""
        claims = self._claims(request)
        return await self._answer(await self._purge(claims, await self._job(request, claims)))

    async def delete(self, request: Request) -> Response:
        """Delete the task's files and its record; answers the task as it was last."""
        claims = self._claims(request)
        purged = await self._purge(claims, await self._job(request, claims))
        answer = await self._answer(purged)
        await self.service.delete(claims.sub, purged.id)
        return answer

    async def _purge(self, claims: Claims, job: Job) -> Job:
        if not job.status.terminal:
            raise Conflict(
                f"Task {task_id_of(job.id)} has not finished; cancel it first "
                f"(POST {PREFIX}/{task_id_of(job.id)}/cancel)."
            )
        return await self.service.purge_files(claims.sub, job.id)
