"""Building blocks of the OpenAPI document: schema references, bodies, responses, errors.

``Components`` collects ``#/components/schemas``: hand-written schemas and the JSON schemas of
the pydantic models the faces validate with (their ``$defs`` hoisted next to them), so a
request schema is the model the code really uses and cannot drift from it.

Each face answers errors in its own dialect, and ``errors`` documents them in it:

- ``openai``: ``{"error": {"message", "type", "param", "code"}}`` (``/v1``, files, probes);
- ``backserv``: ``{"error": "<status word>", "message"}`` (the Back.Serv task API);
- ``detail``: FastAPI's ``{"detail": "..."}``, and ``{"detail": [{"loc", "msg", "type"}]}``
  for a 422 (the Tasks API).
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel

from gateway.idempotency import HEADER as IDEMPOTENCY_HEADER
from gateway.idempotency import MAX_KEY_LENGTH, REPLAYED_HEADER

Schema = dict[str, Any]
Dialect = Literal["openai", "backserv", "detail"]

REF_PREFIX = "#/components/schemas/"
JSON = "application/json"


def ref(name: str) -> Schema:
    return {"$ref": REF_PREFIX + name}


def nullable(schema: Schema) -> Schema:
    return {"anyOf": [schema, {"type": "null"}]}


def obj(
    properties: dict[str, Schema],
    required: tuple[str, ...] | list[str] = (),
    *,
    additional: bool | Schema = True,
    description: str | None = None,
) -> Schema:
    """An object schema; ``required`` defaults to none, extra properties to allowed."""
    out: Schema = {"type": "object", "properties": properties}
    if required:
        out["required"] = list(required)
    if additional is not True:
        out["additionalProperties"] = additional
    if description:
        out["description"] = description
    return out


STRING: Schema = {"type": "string"}
INTEGER: Schema = {"type": "integer"}
NUMBER: Schema = {"type": "number"}
BOOLEAN: Schema = {"type": "boolean"}
ANY_OBJECT: Schema = {"type": "object"}
UNIX_SECONDS: Schema = {"type": "integer", "description": "Unix time, in seconds."}


class Components:
    """The document's ``components``: schemas, and the security schemes the faces use."""

    def __init__(self) -> None:
        self.schemas: dict[str, Schema] = {}

    def add(self, name: str, schema: Schema) -> Schema:
        """Register ``schema`` as ``name`` (once) and return a reference to it."""
        self.schemas.setdefault(name, schema)
        return ref(name)

    def model(self, model: type[BaseModel], name: str | None = None) -> Schema:
        """The pydantic model's validation schema, registered with its ``$defs``."""
        name = name or model.__name__
        if name not in self.schemas:
            schema = model.model_json_schema(ref_template=REF_PREFIX + "{model}")
            for def_name, definition in schema.pop("$defs", {}).items():
                self.schemas.setdefault(def_name, definition)
            self.schemas[name] = schema
        return ref(name)

    def properties_of(self, model: type[BaseModel]) -> dict[str, Schema]:
        """The model's property schemas (its ``$defs`` registered), to build a wider body."""
        schema = self.schemas[self.model(model)["$ref"].removeprefix(REF_PREFIX)]
        props: dict[str, Schema] = schema.get("properties", {})
        return {name: dict(prop) for name, prop in props.items()}

    def error_schemas(self) -> None:
        self.add(
            "OpenAIError",
            obj(
                {
                    "error": obj(
                        {
                            "message": STRING,
                            "type": {
                                **STRING,
                                "description": "invalid_request_error, authentication_error, "
                                "permission_error, not_found_error, conflict_error, "
                                "rate_limit_error, service_unavailable, server_error, timeout",
                            },
                            "param": {
                                **nullable(STRING),
                                "description": "The request field (or header) at fault.",
                            },
                            "code": {
                                **nullable(STRING),
                                "description": "A stable machine-readable code.",
                            },
                            "job_id": {
                                **STRING,
                                "description": "The job a synchronous request created (502, "
                                "504, 409 of /v1/images/generations); poll it.",
                            },
                        },
                        ("message", "type", "param", "code"),
                    )
                },
                ("error",),
                description="OpenAI's error envelope, used by every /v1 face.",
            ),
        )
        self.add(
            "BackServError",
            obj(
                {
                    "error": {**STRING, "description": "The HTTP status in words."},
                    "message": STRING,
                },
                ("error", "message"),
                description="The Back.Serv task API's error shape.",
            ),
        )
        self.add("TaskErrorDetail", obj({"detail": STRING}, ("detail",)))
        self.add(
            "ValidationError",
            obj(
                {
                    "loc": {
                        "type": "array",
                        "items": {"anyOf": [STRING, INTEGER]},
                        "description": "Where: 'body', 'query', 'path' and the field's path.",
                    },
                    "msg": STRING,
                    "type": STRING,
                },
                ("loc", "msg", "type"),
            ),
        )
        self.add(
            "HTTPValidationError",
            obj({"detail": {"type": "array", "items": ref("ValidationError")}}, ("detail",)),
        )


def content(schema: Schema, media: str = JSON) -> dict[str, Any]:
    return {media: {"schema": schema}}


def json_body(schema: Schema, *, required: bool = True, description: str = "") -> Schema:
    body: Schema = {"required": required, "content": content(schema)}
    if description:
        body["description"] = description
    return body


def header(description: str, schema: Schema = STRING) -> Schema:
    return {"description": description, "schema": schema}


def answer(
    description: str,
    schema: Schema | None = None,
    *,
    media: str = JSON,
    headers: dict[str, Schema] | None = None,
    follow: dict[str, Schema] | None = None,
) -> Schema:
    """A response object: ``description``, optional content, headers and links."""
    out: Schema = {"description": description}
    if schema is not None:
        out["content"] = content(schema, media)
    if headers:
        out["headers"] = headers
    if follow:
        out["links"] = follow
    return out


def links(parameter: str, expression: str, *operation_ids: str) -> dict[str, Schema]:
    """OpenAPI links: each operation takes ``parameter`` from this answer (``expression``)."""
    return {
        op_id[0].upper() + op_id[1:]: {
            "operationId": op_id,
            "parameters": {parameter: expression},
        }
        for op_id in operation_ids
    }


API_KEY: list[dict[str, list[str]]] = [{"ApiKey": []}]
IDEMPOTENCY_KEY: Schema = {
    "name": IDEMPOTENCY_HEADER,
    "in": "header",
    "required": False,
    "description": "Retry-safe submits: the same key with the same body returns the job the "
    "first request created (Idempotent-Replayed: true); with another body it is a 422.",
    "schema": {
        "type": "string",
        "minLength": 1,
        "maxLength": MAX_KEY_LENGTH,
        "pattern": "^[ -~]+$",
    },
}
ACCEPTED_HEADERS = {
    "Location": header("Where to poll it: /v1/jobs/{id} (/query_task/{id} for a ticket)."),
    REPLAYED_HEADER: header("'true' when an earlier request with this Idempotency-Key made it."),
}
RETRY_AFTER = header("Seconds to wait before retrying.", INTEGER)
WWW_AUTHENTICATE = header("'Bearer': the credentials the request needs.")

#: what each status means, as every face produces it
_STATUS = {
    400: "Bad input: the message names the field and the rule it breaks.",
    401: "Missing, malformed or unknown credentials.",
    403: "The credentials do not allow this.",
    404: "No such resource for these credentials (another owner's is a 404 too).",
    409: "The resource's state does not allow this (e.g. it has already finished).",
    410: "The resource has expired.",
    413: "The request body is over the size limit.",
    415: "The request body is not JSON.",
    422: "The request cannot be processed as sent.",
    429: "Over a rate limit or the cap on active jobs (retry after Retry-After seconds), or, "
    "with type and code 'insufficient_quota' (no Retry-After), over the key's budget.",
    502: "The job failed upstream; its id is in the error.",
    503: "Temporarily unable: the store is closing, or no route of the model can run.",
    504: "The job is still running after the wait; its id is in the error.",
}
_DIALECTS: dict[Dialect, str] = {
    "openai": "OpenAIError",
    "backserv": "BackServError",
    "detail": "TaskErrorDetail",
}


def errors(dialect: Dialect, *codes: int, notes: dict[int, str] | None = None) -> Schema:
    """The error responses ``codes`` of an operation, in the face's dialect."""
    out: Schema = {}
    for code in codes:
        schema = ref(_DIALECTS[dialect])
        if dialect == "detail" and code == 422:
            # a request the core refuses as a whole (a reused Idempotency-Key) has a plain detail
            schema = {"anyOf": [ref("HTTPValidationError"), schema]}
        headers: dict[str, Schema] = {}
        if code == 401:
            headers["WWW-Authenticate"] = WWW_AUTHENTICATE
        if code in (429, 503):
            headers["Retry-After"] = RETRY_AFTER
        description = (notes or {}).get(code) or _STATUS[code]
        out[str(code)] = answer(description, schema, headers=headers)
    return out


def security_schemes() -> dict[str, Schema]:
    return {
        "ApiKey": {
            "type": "http",
            "scheme": "bearer",
            "description": "An API key: 'Authorization: Bearer bsk_...' (`backserv keys create`, "
            "or BACKSERV_API_KEYS).",
        },
        "TasksJWT": {
            "type": "http",
            "scheme": "bearer",
            "bearerFormat": "JWT",
            "description": "An HS256 JWT signed with BACKSERV_TASKS_JWT_SECRET, each part "
            "unpadded, canonical base64url; claims: 'sub' (the owner, required), 'exp' "
            "(required unless BACKSERV_TASKS_JWT_ALLOW_NO_EXP), 'tenant', 'providers', "
            "'fal_apps', 'nbf', 'iss', 'aud'.",
        },
    }
