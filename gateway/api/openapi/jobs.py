"""The document's Jobs API: ``/v1/jobs*``, the job's SSE stream, ``/v1/images/generations``
and ``/v1/webhook_secret`` (``gateway/api/jobs.py``, ``job_events.py``, ``images.py``,
``webhook_secrets.py``), errors in OpenAI's envelope."""

from __future__ import annotations

from gateway.api.jobs import MAX_WAIT_SECONDS
from gateway.api.openapi.components import (
    ACCEPTED_HEADERS,
    API_KEY,
    IDEMPOTENCY_KEY,
    STRING,
    UNIX_SECONDS,
    Components,
    Schema,
    answer,
    errors,
    header,
    json_body,
    links,
    obj,
    ref,
)
from gateway.api.openapi.job_objects import (
    EVENT,
    image_job_body,
    images_body,
    job_body,
    job_schemas,
)
from gateway.catalog import Catalog
from gateway.jobs import Status

TAG = "Jobs API"

JOB_ID: Schema = {
    "name": "job_id",
    "in": "path",
    "required": True,
    "schema": {**STRING, "examples": ["job-0123456789abcdef01234567"]},
}


def jobs_paths(c: Components, catalog: Catalog) -> dict[str, Schema]:
    job_schemas(c)
    job = ref("Job")
    create_errors = errors(
        "openai",
        400,
        401,
        403,
        404,
        409,
        413,
        415,
        422,
        429,
        503,
        notes={403: "The key has a budget and the model an unpriced route (model_unpriced)."},
    )
    job_operations = ("getJob", "cancelJob", "streamJobEvents")
    accepted = answer(
        "Accepted: the job, stored.",
        job,
        headers=ACCEPTED_HEADERS,
        follow=links("job_id", "$response.body#/id", *job_operations),
    )
    image = c.add(
        "ImageData",
        obj(
            {"url": STRING, "b64_json": STRING, "revised_prompt": STRING},
            ("revised_prompt",),
        ),
    )
    images_answer = obj(
        {"created": UNIX_SECONDS, "data": {"type": "array", "items": image}},
        ("created", "data"),
    )
    secret = webhook_secret(c)
    common = {"security": API_KEY, "tags": [TAG]}
    return {
        "/v1/jobs/images": {
            "post": {
                **common,
                "operationId": "createImageJob",
                "summary": "Submit an image job",
                "parameters": [IDEMPOTENCY_KEY],
                "requestBody": json_body(image_job_body(c, catalog)),
                "responses": {"202": accepted, **create_errors},
            }
        },
        "/v1/jobs": {
            "post": {
                **common,
                "operationId": "createJob",
                "summary": "Submit a job of any kind",
                "parameters": [IDEMPOTENCY_KEY],
                "requestBody": json_body(job_body(c, catalog)),
                "responses": {"202": accepted, **create_errors},
            },
            "get": {
                **common,
                "operationId": "listJobs",
                "summary": "The key's jobs, newest first",
                "parameters": _list_parameters(),
                "responses": {
                    "200": answer("A page of jobs.", ref("JobList")),
                    **errors("openai", 400, 401, 403),
                },
            },
        },
        "/v1/jobs/{job_id}": {
            "get": {
                **common,
                "operationId": "getJob",
                "summary": "A job; ?wait=N long-polls until it finishes",
                "parameters": [
                    JOB_ID,
                    {
                        "name": "wait",
                        "in": "query",
                        "schema": {"type": "integer", "minimum": 0, "maximum": MAX_WAIT_SECONDS},
                        "description": "Seconds to wait for the job to finish.",
                    },
                ],
                "responses": {"200": answer("The job.", job), **errors("openai", 400, 401, 404)},
            }
        },
        "/v1/jobs/{job_id}/cancel": {
            "post": {
                **common,
                "operationId": "cancelJob",
                "summary": "Cancel a QUEUED or PROCESSING job",
                "parameters": [JOB_ID],
                "responses": {
                    "200": answer("The job, CANCELLED.", job),
                    **errors("openai", 401, 404, 409),
                },
            }
        },
        "/v1/jobs/{job_id}/events": {
            "get": {
                **common,
                "operationId": "streamJobEvents",
                "summary": "The job's changes as Server-Sent Events",
                "description": "Events 'status' and 'progress', then 'completed', 'failed' or "
                "'cancelled'; each event's data is the job. Resume with Last-Event-ID.",
                "parameters": [
                    JOB_ID,
                    {"name": "Last-Event-ID", "in": "header", "schema": STRING},
                ],
                "responses": {
                    "200": answer(
                        "The event stream; the schema is each event's.",
                        EVENT,
                        media="text/event-stream",
                    ),
                    **errors("openai", 401, 404),
                },
            }
        },
        "/v1/images/generations": {
            "post": {
                "security": API_KEY,
                "tags": ["OpenAI images"],
                "operationId": "createImage",
                "summary": "OpenAI's image endpoint: submit a job and wait for it",
                "parameters": [IDEMPOTENCY_KEY],
                "requestBody": json_body(images_body(c, catalog)),
                "responses": {
                    "200": answer(
                        "The images.",
                        images_answer,
                        headers={"x-backserv-job-id": header("The job that made them.")},
                        follow=links(
                            "job_id", "$response.header.x-backserv-job-id", *job_operations
                        ),
                    ),
                    **errors(
                        "openai",
                        400,
                        401,
                        404,
                        409,
                        413,
                        415,
                        422,
                        429,
                        502,
                        503,
                        504,
                        notes={
                            409: "The job was cancelled during the wait (or a twin request "
                            "holds the Idempotency-Key)."
                        },
                    ),
                },
            }
        },
        "/v1/webhook_secret": {
            "get": {
                "security": API_KEY,
                "tags": ["Webhooks"],
                "operationId": "getWebhookSecret",
                "summary": "The key's webhook signing secret (made on first read)",
                "responses": {"200": answer("The secret.", secret), **errors("openai", 401)},
            }
        },
        "/v1/webhook_secret/rotate": {
            "post": {
                "security": API_KEY,
                "tags": ["Webhooks"],
                "operationId": "rotateWebhookSecret",
                "summary": "Replace the key's webhook signing secret",
                "responses": {"200": answer("The new secret.", secret), **errors("openai", 401)},
            }
        },
    }


def webhook_secret(c: Components) -> Schema:
    """The ``WebhookSecret`` object (``/v1/webhook_secret``, ``/api/v1/webhook_secret``)."""
    return c.add(
        "WebhookSecret",
        obj(
            {
                "object": {"const": "webhook_secret"},
                "secret": {**STRING, "pattern": "^whsec_"},
                "created_at": UNIX_SECONDS,
            },
            ("object", "secret", "created_at"),
        ),
    )


def _list_parameters() -> list[Schema]:
    def query(name: str, schema: Schema, description: str) -> Schema:
        return {"name": name, "in": "query", "schema": schema, "description": description}

    return [
        query(
            "limit", {"type": "integer", "minimum": 1, "maximum": 100, "default": 20}, "Page size."
        ),
        query("after", STRING, "The last id of the previous page."),
        query("status", {"enum": [s.value for s in Status]}, "Only jobs of this status."),
        query("model", STRING, "Only jobs of this model."),
        query("user_id", STRING, "Only jobs the Back.Serv task API made for this user."),
        query("owner", STRING, "Another owner's jobs: needs an 'admin' key (else 403)."),
    ]
