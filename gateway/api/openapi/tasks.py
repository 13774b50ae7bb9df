"""The document's Tasks API, under ``/api/v1/tasks`` (``gateway/api/tasks/``): JWT bearer
tokens, errors as ``{"detail": ...}`` (a 422 as ``HTTPValidationError``); and its webhook
secret, ``/api/v1/webhook_secret`` (``gateway/api/tasks/webhook_secret.py``)."""

from __future__ import annotations

from gateway.api.openapi.components import (
    IDEMPOTENCY_KEY,
    STRING,
    Components,
    Schema,
    answer,
    errors,
    header,
    json_body,
    links,
    ref,
)
from gateway.api.openapi.jobs import webhook_secret
from gateway.api.openapi.task_objects import create_body, task_public, task_schemas
from gateway.api.tasks.listing import MAX_LIMIT, MAX_SKIP
from gateway.api.tasks.routes import PREFIX
from gateway.api.tasks.schemas import TaskType
from gateway.api.tasks.webhook_secret import PATH as SECRET_PATH

JWT: list[dict[str, list[str]]] = [{"TasksJWT": []}]
TAG = "Tasks API"
_TASK_ID: Schema = {
    "name": "task_id",
    "in": "path",
    "required": True,
    "schema": {"type": "string", "format": "uuid"},
}
#: every operation: a bad token (401); no BACKSERV_TASKS_JWT_SECRET configured (503)
_ALWAYS = (401, 503)
_NOTES = {
    503: "The Tasks API is not configured (no BACKSERV_TASKS_JWT_SECRET), or no route "
    "of the task's model can run."
}

_SECRET_NOTE = (
    "Webhooks of tasks (`webhook_url`) are signed per Standard Webhooks with the secret of "
    "the task's owner, the token's `sub` (an API key whose id is that `sub` sees the same "
    "secret at `/v1/webhook_secret`). A token with a `tenant` claim gets 403: the secret "
    "signs every tenant's webhooks."
)


def _query(name: str, schema: Schema, description: str) -> Schema:
    return {"name": name, "in": "query", "schema": schema, "description": description}


def _list_parameters(*, generation: bool) -> list[Schema]:
    params = [
        _query(
            "skip",
            {"type": "integer", "minimum": 0, "maximum": MAX_SKIP, "default": 0},
            "Number of tasks to skip.",
        ),
        _query(
            "limit",
            {"type": "integer", "minimum": 0, "maximum": MAX_LIMIT, "default": 100},
            "Maximum number of tasks to return.",
        ),
        _query("status", ref("TaskStatus"), "Filter by task status (any case)."),
    ]
    if not generation:
        params.append(_query("task_type", ref("TaskType"), "Filter by task type (any case)."))
    for name in ("origin_instance", "origin_zone", "origin_tenant_id"):
        params.append(_query(name, STRING, f"Filter by {name.replace('_', ' ')}."))
    if generation:
        params.append(_query("workflow_id", STRING, "Filter by workflow ID."))
    return params


def _operation(
    op_id: str, summary: str, ok: Schema, codes: tuple[int, ...], **extra: object
) -> Schema:
    return {
        "security": JWT,
        "tags": [TAG],
        "operationId": op_id,
        "summary": summary,
        **extra,
        "responses": {
            "200": ok,
            **errors("detail", *sorted({*_ALWAYS, *codes}), notes=_NOTES),
        },
    }


def tasks_paths(c: Components) -> dict[str, Schema]:
    task_schemas(c)
    secret = webhook_secret(c)
    any_task = answer("The task.", task_public())
    generation = answer("The generation task.", task_public(TaskType.GENERATION))
    task_ops = ("getTask", "updateTask", "cancelTask", "cleanupTask", "deleteTask")
    created = answer(
        "The task, created.",
        task_public(),
        follow=links("task_id", "$response.body#/id", *task_ops),
    )
    generation_ops = ("getGenerationTask", "updateGenerationTask", "cancelGenerationTask")
    generation_created = answer(
        "The generation task, created.",
        task_public(TaskType.GENERATION),
        follow=links("task_id", "$response.body#/id", *generation_ops, *task_ops),
    )
    truncated = {
        "X-Tasks-Scan-Truncated": header("'true' when the scan stopped before the page filled.")
    }
    create = (400, 403, 409, 413, 415, 422, 429)
    update = (403, 404, 409, 413, 415, 422, 503)
    change = (404, 409, 422)
    path = (404, 422)

    def listing(of: Schema) -> Schema:
        return answer("Tasks, newest first.", {"type": "array", "items": of}, headers=truncated)

    return {
        f"{PREFIX}/": {
            "post": _operation(
                "createTask",
                "Create and start a task",
                created,
                create,
                parameters=[IDEMPOTENCY_KEY],
                requestBody=json_body(create_body()),
            ),
            "get": _operation(
                "listTasks",
                "List tasks",
                listing(task_public()),
                (403, 422),
                parameters=_list_parameters(generation=False),
            ),
        },
        f"{PREFIX}/generation": {
            "post": _operation(
                "createGenerationTask",
                "Create a generation task ('task_type' may be left out)",
                generation_created,
                create,
                parameters=[IDEMPOTENCY_KEY],
                requestBody=json_body(ref("CreateGenerationTask")),
            ),
            "get": _operation(
                "listGenerationTasks",
                "List generation tasks",
                listing(task_public(TaskType.GENERATION)),
                (403, 422),
                parameters=_list_parameters(generation=True),
            ),
        },
        f"{PREFIX}/generation/{{task_id}}": {
            "get": _operation(
                "getGenerationTask",
                "Get a generation task",
                generation,
                path,
                parameters=[_TASK_ID],
            ),
            "put": _operation(
                "updateGenerationTask",
                "Update a generation task",
                generation,
                update,
                parameters=[_TASK_ID],
                requestBody=json_body(ref("GenerationTaskUpdate")),
            ),
        },
        f"{PREFIX}/generation/{{task_id}}/cancel": {
            "post": _operation(
                "cancelGenerationTask",
                "Cancel a generation task",
                generation,
                change,
                parameters=[_TASK_ID],
            ),
        },
        f"{PREFIX}/{{task_id}}": {
            "get": _operation("getTask", "Get a task", any_task, path, parameters=[_TASK_ID]),
            "put": _operation(
                "updateTask",
                "Update a task",
                any_task,
                update,
                parameters=[_TASK_ID],
                requestBody=json_body(ref("TaskPublicUpdate")),
            ),
            "delete": _operation(
                "deleteTask",
                "Delete a finished task's files and record (answers it as it was)",
                any_task,
                change,
                parameters=[_TASK_ID],
            ),
        },
        f"{PREFIX}/{{task_id}}/cancel": {
            "post": _operation(
                "cancelTask", "Cancel a task", any_task, change, parameters=[_TASK_ID]
            ),
        },
        SECRET_PATH: {
            "get": _operation(
                "getTaskWebhookSecret",
                "The secret the token's tasks' webhooks are signed with (made on first read)",
                answer("The secret of the token's 'sub'.", secret),
                (403,),
                description=_SECRET_NOTE,
            ),
        },
        f"{SECRET_PATH}/rotate": {
            "post": _operation(
                "rotateTaskWebhookSecret",
                "Replace the secret the token's tasks' webhooks are signed with",
                answer("The new secret of the token's 'sub'.", secret),
                (403,),
                description=_SECRET_NOTE,
            ),
        },
        f"{PREFIX}/{{task_id}}/cleanup": {
            "post": _operation(
                "cleanupTask",
                "Delete a finished task's files; keep its record (is_deleted)",
                any_task,
                change,
                parameters=[_TASK_ID],
            ),
        },
    }
