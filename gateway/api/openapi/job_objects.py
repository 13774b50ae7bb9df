"""The Jobs API's objects in the document: the job (and what it holds), its SSE event, and
the bodies of the requests that create jobs.

Request bodies are built from the kinds' pydantic input models (``gateway/kinds.py``), and
their ``model`` fields list this gateway's catalog, so the document describes the deployment
that serves it. The job's fields are what ``gateway/api/jobs.py`` (``render_job``) writes.
"""

from __future__ import annotations

from gateway.api.images import _IGNORED
from gateway.api.jobs import PRIORITY_RANGE
from gateway.api.openapi.components import (
    ANY_OBJECT,
    BOOLEAN,
    INTEGER,
    NUMBER,
    REF_PREFIX,
    STRING,
    UNIX_SECONDS,
    Components,
    Schema,
    nullable,
    obj,
    ref,
)
from gateway.catalog import Catalog
from gateway.jobs import Status
from gateway.kinds import KINDS, ImageInput, KindInput
from gateway.webhooks.validate import EVENTS, MAX_URL_LENGTH

#: one Server-Sent Event of GET /v1/jobs/{job_id}/events (keep-alive comments aside)
EVENT = obj(
    {
        "event": {"enum": ["status", "progress", "completed", "failed", "cancelled"]},
        "id": {**STRING, "pattern": "^[0-9]{20}$", "description": "Send as Last-Event-ID."},
        "data": {
            **STRING,
            "contentMediaType": "application/json",
            "contentSchema": ref("Job"),
            "description": "The job, as GET /v1/jobs/{job_id} shows it.",
        },
    },
    ("event", "id", "data"),
)


def webhook_fields() -> dict[str, Schema]:
    return {
        "webhook_url": {
            **nullable({**STRING, "maxLength": MAX_URL_LENGTH}),
            "description": "A public http(s) URL the gateway POSTs the job's events to.",
        },
        "webhook_events": {
            **nullable({"type": "array", "items": {"enum": list(EVENTS)}, "minItems": 1}),
            "description": "Which events to send (default ['completed']); needs webhook_url.",
        },
    }


PRIORITY: Schema = {
    **nullable({"type": "integer", "minimum": PRIORITY_RANGE[0], "maximum": PRIORITY_RANGE[1]}),
    "default": 0,
    "description": "Higher runs first.",
}


def model_ids(catalog: Catalog, kind: str | None = None) -> Schema:
    ids = [m.id for m in catalog if kind is None or m.kind.name == kind]
    return {**STRING, "enum": ids, "description": "A model of this gateway's catalog."}


def job_schemas(c: Components) -> None:
    error = c.add(
        "JobError",
        obj({"code": STRING, "message": STRING}, ("code", "message"), description="Why."),
    )
    c.add(
        "JobAttempt",
        obj(
            {
                "n": INTEGER,
                "route": STRING,
                "provider": STRING,
                "request_id": nullable(STRING),
                "started_at": nullable(NUMBER),
                "ended_at": nullable(NUMBER),
                "outcome": nullable(STRING),
                "error": nullable(error),
                "cost": nullable(
                    {
                        **NUMBER,
                        "description": "What the attempt cost, in the job's usage currency: "
                        "final once the provider reported, else estimated; null: unpriced.",
                    }
                ),
            },
            ("n", "route", "provider", "request_id", "started_at", "ended_at", "outcome"),
        ),
    )
    output = c.add(
        "ResultFile",
        obj(
            {
                "url": {**STRING, "description": "A signed, expiring /files URL."},
                "content_type": STRING,
                "width": nullable(INTEGER),
                "height": nullable(INTEGER),
            },
            ("url", "content_type", "width", "height"),
        ),
    )
    files = {"type": "array", "items": output}
    c.add(
        "JobResult",
        obj(
            {
                "url": STRING,
                "content_type": STRING,
                "width": nullable(INTEGER),
                "height": nullable(INTEGER),
                "seed": nullable(INTEGER),
                "duration": nullable(NUMBER),
                "fps": nullable(NUMBER),
                "expires_at": UNIX_SECONDS,
                "expired": {**BOOLEAN, "description": "Retention deleted the files."},
                "images": files,
                "videos": files,
            },
            ("expires_at",),
            description="The first output's fields, and every output under images/videos.",
        ),
    )
    delivery = obj(
        {
            "id": STRING,
            "event": STRING,
            "status": {"enum": ["pending", "delivered", "failed"]},
            "attempts": INTEGER,
            "last_status_code": nullable(INTEGER),
            "last_error": nullable(STRING),
            "delivered_at": nullable(INTEGER),
            "next_attempt_at": nullable(INTEGER),
        },
        ("id", "event", "status", "attempts"),
    )
    c.add(
        "JobWebhook",
        obj(
            {
                "url": STRING,
                "events": {"type": "array", "items": {"enum": list(EVENTS)}},
                "deliveries": {"type": "array", "items": delivery},
            },
            ("url", "events", "deliveries"),
        ),
    )
    c.add(
        "JobUsage",
        obj(
            {
                "cost": nullable(
                    {
                        **NUMBER,
                        "description": "The sum of the attempts' costs (a failed attempt the "
                        "provider billed included); null when any attempt is unpriced.",
                    }
                ),
                "currency": {**STRING, "examples": ["USD"]},
                "priced": BOOLEAN,
                "estimate": nullable(
                    {**NUMBER, "description": "The cost estimated at submit from the input."}
                ),
            },
            ("cost", "currency", "priced", "estimate"),
            description="What the job cost (README 'Spend and budgets').",
        ),
    )
    c.add(
        "Job",
        obj(
            {
                "id": STRING,
                "object": {"const": "job"},
                "status": {"enum": [s.value for s in Status]},
                "model": STRING,
                "kind": {"enum": list(KINDS)},
                "created_at": UNIX_SECONDS,
                "started_at": nullable(UNIX_SECONDS),
                "completed_at": nullable(UNIX_SECONDS),
                "progress": {"type": "integer", "minimum": 0, "maximum": 100},
                "queue_position": nullable(INTEGER),
                "priority": INTEGER,
                "input": {**ANY_OBJECT, "description": "The input, defaults filled in."},
                "provider": nullable(STRING),
                "retry_count": INTEGER,
                "fallback_used": BOOLEAN,
                "usage": ref("JobUsage"),
                "attempts": {"type": "array", "items": ref("JobAttempt")},
                "result": nullable(ref("JobResult")),
                "error": ref("JobError"),
                "webhook": ref("JobWebhook"),
            },
            (
                "id",
                "object",
                "status",
                "model",
                "kind",
                "created_at",
                "started_at",
                "completed_at",
                "progress",
                "queue_position",
                "priority",
                "input",
                "provider",
                "retry_count",
                "fallback_used",
                "usage",
                "attempts",
            ),
            description="A job; 'result' when COMPLETED, 'error' when FAILED, 'webhook' "
            "(in GET /v1/jobs/{id}) when it was created with one.",
        ),
    )
    c.add(
        "JobList",
        obj(
            {
                "object": {"const": "list"},
                "jobs": {"type": "array", "items": ref("Job")},
                "has_more": BOOLEAN,
                "first_id": nullable(STRING),
                "last_id": nullable(STRING),
            },
            ("object", "jobs", "has_more", "first_id", "last_id"),
        ),
    )


def kind_input(c: Components, model: type[KindInput]) -> Schema:
    """A kind's input model, registered with its optional fields taking null too: the faces
    read a null as the field's default (``Kind.validate``)."""
    reference = c.model(model)
    schema = c.schemas[reference["$ref"].removeprefix(REF_PREFIX)]
    required = set(schema.get("required", ()))
    properties: dict[str, Schema] = schema.get("properties", {})
    for name, prop in properties.items():
        if name not in required and not _takes_null(prop):
            meta = {key: prop[key] for key in _META if key in prop}
            core = {key: value for key, value in prop.items() if key not in _META}
            properties[name] = {**meta, **nullable(core)}
    return reference


_META = ("title", "description", "default", "examples")


def _takes_null(prop: Schema) -> bool:
    return prop.get("type") == "null" or any(
        branch.get("type") == "null" for branch in prop.get("anyOf", ())
    )


def image_job_body(c: Components, catalog: Catalog) -> Schema:
    kind_input(c, ImageInput)
    props = c.properties_of(ImageInput)
    props.update(model=model_ids(catalog, "image"), priority=PRIORITY, **webhook_fields())
    return c.add(
        "ImageJobRequest",
        obj(props, ("model", "prompt"), additional=False, description="An image job."),
    )


def job_body(c: Components, catalog: Catalog) -> Schema:
    """One branch per kind the catalog has models of: its models, and its input."""
    kinds = [kind for kind in KINDS.values() if any(m.kind.name == kind.name for m in catalog)]
    branches = [
        obj(
            {
                "model": model_ids(catalog, kind.name),
                "input": {
                    **kind_input(c, kind.input_model),
                    "description": f"The input of a '{kind.name}' job.",
                },
                "priority": PRIORITY,
                **webhook_fields(),
            },
            ("model", "input"),
            additional=False,
        )
        for kind in kinds
    ]
    return c.add(
        "JobRequest",
        {"oneOf": branches, "description": "Any job: its input is the input of its model's kind."},
    )


def images_body(c: Components, catalog: Catalog) -> Schema:
    kind_input(c, ImageInput)
    extras = c.properties_of(ImageInput)
    props: dict[str, Schema] = {
        "model": model_ids(catalog, "image"),
        "prompt": extras.pop("prompt"),
        "n": {**nullable({"type": "integer", "minimum": 1, "maximum": 10}), "default": 1},
        "size": {
            **nullable({**STRING, "pattern": r"^(auto|\d{2,5}x\d{2,5})$"}),
            "description": "'WIDTHxHEIGHT' or 'auto'.",
        },
        "response_format": nullable({"enum": ["url", "b64_json"]}),
        "user": nullable(STRING),
        **{name: prop for name, prop in extras.items() if name != "num_images"},
        **{name: {"description": "Accepted and ignored."} for name in sorted(_IGNORED)},
        **webhook_fields(),
    }
    return c.add(
        "ImageGenerationRequest",
        obj(props, ("model", "prompt"), additional=False, description="OpenAI's request."),
    )
