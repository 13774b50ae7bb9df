"""``POST /api/v1/tasks/``: validate a task, pick its model, and submit it as a job.

The job's ``meta`` keeps what the task says beyond its kind's input: ``task_type`` and the
``origin_*`` fields at the top level (the store can filter on them), the rest under
``meta["task"]`` (config, provider wishes, capabilities, fields no kind has), to show them
back. ``webhook_url`` becomes the job's webhook (the Jobs API's object is what is delivered).
"""

from __future__ import annotations

from collections.abc import Mapping
from types import SimpleNamespace
from typing import Any

from pydantic import ValidationError

from gateway.api.tasks.errors import TaskValidationError, from_pydantic, invalid
from gateway.api.tasks.inputs import Translation, translate
from gateway.api.tasks.jwt import Claims
from gateway.api.tasks.routing import ModelChooser, wish_of
from gateway.api.tasks.schemas import CREATE_SCHEMAS, CreateTask, TaskType
from gateway.api.tasks.update import Changes
from gateway.errors import InvalidRequest, PermissionDenied
from gateway.idempotency import read_idempotency
from gateway.jobs import Job
from gateway.service import JobRequest, JobService

TASK_TYPES = ", ".join(f"'{t}'" for t in TaskType)
_KEPT = (
    "config",
    "provider_type",
    "provider_config",
    "fallback_provider_type",
    "fallback_provider_config",
    "active_provider_capabilities",
    "fallback_provider_capabilities",
    "queue_name",
)
#: the core's error codes -> pydantic's error types and messages, for the 422
_PYDANTIC = {
    "missing_parameter": ("missing", "Field required"),
    "unknown_parameter": ("extra_forbidden", "Extra inputs are not permitted"),
}


def task_type_of_body(body: Mapping[str, Any]) -> TaskType:
    raw = body.get("task_type")
    if raw is None:
        raise invalid(("body", "task_type"), "Field required", "missing")
    if not isinstance(raw, str) or raw not in TaskType.__members__:
        raise invalid(("body", "task_type"), f"Input should be {TASK_TYPES}", "enum")
    return TaskType(raw)


def _input_error(exc: InvalidRequest, translation: Translation) -> TaskValidationError:
    """A kind's complaint about a field, located at the task field it came from."""
    param = exc.param or ""
    head, _, rest = param.partition(".")
    source = translation.fields.get(head, head)
    loc: list[str | int] = ["body", *source.split(".")]
    loc += [int(p) if p.isascii() and p.isdigit() else p for p in rest.split(".") if p]
    kind, message = _PYDANTIC.get(exc.code or "", ("value_error", exc.message))
    message = message.removeprefix(f"Invalid '{param}': ").removesuffix(".")
    named = ".".join(str(p) for p in loc[1:])
    return invalid(loc, message.replace(f"'{param}'", f"'{named}'"), kind)


class TaskCreator:
    def __init__(self, service: JobService, chooser: ModelChooser) -> None:
        self.service = service
        self.chooser = chooser

    async def create(
        self,
        claims: Claims,
        body: dict[str, Any],
        task_type: TaskType,
        *,
        headers: Mapping[str, str],
        path: str,
    ) -> tuple[Job, bool]:
        """The new job (or, for a repeated ``Idempotency-Key``, the earlier one) and whether
        it is a replay."""
        try:
            task = CREATE_SCHEMAS[task_type].model_validate(body)
        except ValidationError as exc:
            raise from_pydantic(exc) from None
        tenant = task.origin_tenant_id or claims.tenant
        if claims.tenant is not None and tenant != claims.tenant:
            raise PermissionDenied(
                f"This token acts for tenant '{claims.tenant}'; it cannot create tasks for "
                f"'{task.origin_tenant_id}'."
            )
        translation = translate(task, self.service.max_input_bytes)
        model = self.chooser.choose(
            task_type, wish_of(task, task_type, claims.providers, claims.fal_apps)
        )
        meta = self._meta(task, task_type, tenant, translation)
        idem = read_idempotency(headers, path, body)
        try:
            return await self.service.submit(
                JobRequest(
                    owner=claims.sub,
                    model=model,
                    input=translation.kind_input,
                    priority=task.priority,
                    meta=meta,
                    webhook_url=task.webhook_url,
                    idempotency=idem,
                )
            )
        except InvalidRequest as exc:
            if exc.param == "webhook_url":
                raise invalid(("body", "webhook_url"), exc.message) from None
            raise _input_error(exc, translation) from None

    async def reroute(self, claims: Claims, job: Job, task_type: TaskType, changes: Changes) -> Job:
        """A PENDING task's new ``fal_app_id`` and/or ``fal_parameters`` (a ``PUT``): the model
        is chosen again, as at creation, from the task's stored wishes and the new app."""
        task_meta = dict(job.meta.get("task") or {})
        if changes.fal_app_id is not None:
            task_meta["fal_app_id"] = changes.fal_app_id
        wish = SimpleNamespace(
            **{name: task_meta.get(name) for name in _KEPT},
            fal_app_id=task_meta.get("fal_app_id"),
        )
        model = self.chooser.choose(
            task_type, wish_of(wish, task_type, claims.providers, claims.fal_apps)
        )
        raw_input: Any = job.input
        if changes.fal_parameters is not None:
            raw_input = changes.fal_parameters
        meta = {**job.meta, "task": task_meta}
        try:
            return await self.service.reroute(claims.sub, job, model, raw_input, meta)
        except InvalidRequest as exc:
            param = (exc.param or "").partition(".")[0]
            loc = ("body", "fal_parameters", *([param] if param else []))
            raise invalid(loc, exc.message) from None

    def _meta(
        self, task: CreateTask, task_type: TaskType, tenant: str | None, translation: Translation
    ) -> dict[str, Any]:
        meta: dict[str, Any] = {
            "face": "tasks",
            "task_type": task_type.value,
            "origin_instance": task.origin_instance,
        }
        for name, value in (
            ("origin_zone", task.origin_zone),
            ("origin_tenant_id", tenant),
            ("origin_reference", task.origin_reference),
            ("workflow_id", getattr(task, "workflow_id", None)),
        ):
            if value is not None:
                meta[name] = value
        kept = {name: getattr(task, name) for name in _KEPT if getattr(task, name) is not None}
        meta["task"] = {**translation.extras, **kept}
        return meta
