"""The document's Back.Serv task API: ``/submit_task``, ``/query_task/{ticket_id}`` and
``/cancel_task/{ticket_id}`` (``gateway/api/backserv_tasks.py``), errors as
``{"error", "message"}``."""

from __future__ import annotations

from gateway.api.backserv_tasks import (
    CANCELLED_MESSAGE,
    MAX_USER_ID_LENGTH,
    STATUS_WORDS,
    TASK_KINDS,
)
from gateway.api.openapi.components import (
    ACCEPTED_HEADERS,
    API_KEY,
    IDEMPOTENCY_KEY,
    STRING,
    Components,
    Schema,
    answer,
    errors,
    json_body,
    links,
    nullable,
    obj,
)
from gateway.api.openapi.job_objects import kind_input
from gateway.kinds import KINDS

TAG = "Back.Serv task API"
_WORDS = list(STATUS_WORDS.values())
_TICKET: Schema = {
    "name": "ticket_id",
    "in": "path",
    "required": True,
    "schema": STRING,
    "description": "The ticket (the job id: GET /v1/jobs/{ticket_id} shows the same job).",
}
_TIME = {**nullable({**STRING, "format": "date-time"}), "description": "ISO 8601, UTC."}


def backserv_paths(c: Components, *, keyed: bool) -> dict[str, Schema]:
    """``keyed``: BACKSERV_SUBMIT_TASK_AUTH=key (else no credentials are asked for)."""
    user_id = {**STRING, "minLength": 1, "maxLength": MAX_USER_ID_LENGTH}
    # task_params is the input of the task type's kind: one branch per task type
    submit = {
        "oneOf": [
            obj(
                {
                    "task_type": {"const": task_type},
                    "task_params": {
                        **kind_input(c, KINDS[kind].input_model),
                        "description": f"The input of a '{kind}' job.",
                    },
                    "user_id": user_id,
                },
                ("task_type", "task_params", "user_id"),
                additional=False,
            )
            for task_type, kind in TASK_KINDS.items()
        ],
        "description": "A task: its task_params are the input of its task_type's kind.",
    }
    ticket = obj(
        {"ticket_id": STRING, "serv_name": STRING, "status": {"enum": _WORDS}},
        ("ticket_id", "serv_name", "status"),
    )
    task = obj(
        {
            "status": {"enum": _WORDS},
            "result_info": {**nullable(STRING), "description": "The result's URL."},
            "error_info": {**nullable(STRING), "description": "Why it failed."},
            "started_at": _TIME,
            "completed_at": _TIME,
        },
        ("status", "result_info", "error_info", "started_at", "completed_at"),
    )
    cancelled = obj(
        {"status": {"const": "Cancelled"}, "message": {"const": CANCELLED_MESSAGE}},
        ("status", "message"),
    )
    auth = (401,) if keyed else ()
    common = {"security": API_KEY if keyed else [], "tags": [TAG]}
    return {
        "/submit_task": {
            "post": {
                **common,
                "operationId": "backservSubmitTask",
                "summary": "Submit a task",
                "parameters": [IDEMPOTENCY_KEY],
                "requestBody": json_body(c.add("SubmitTaskRequest", submit)),
                "responses": {
                    "202": answer(
                        "The ticket.",
                        ticket,
                        headers=ACCEPTED_HEADERS,
                        follow=links(
                            "ticket_id",
                            "$response.body#/ticket_id",
                            "backservQueryTask",
                            "backservCancelTask",
                        ),
                    ),
                    **errors("backserv", 400, *auth, 409, 413, 415, 422, 429, 503),
                },
            }
        },
        "/query_task/{ticket_id}": {
            "get": {
                **common,
                "operationId": "backservQueryTask",
                "summary": "A task's status",
                "parameters": [_TICKET],
                "responses": {
                    "200": answer("The task.", task),
                    **errors("backserv", *auth, 404),
                },
            }
        },
        "/cancel_task/{ticket_id}": {
            "post": {
                **common,
                "operationId": "backservCancelTask",
                "summary": "Cancel a Queueing or Processing task",
                "parameters": [_TICKET],
                "responses": {
                    "200": answer("Cancelled.", cancelled),
                    **errors(
                        "backserv",
                        400,
                        *auth,
                        404,
                        notes={400: "The task has already finished."},
                    ),
                },
            }
        },
    }
