"""The document's key management for ``admin`` keys: ``/v1/keys`` (``gateway/api/keys.py``)."""

from __future__ import annotations

from gateway.api.openapi.components import (
    API_KEY,
    BOOLEAN,
    INTEGER,
    NUMBER,
    STRING,
    UNIX_SECONDS,
    Components,
    Schema,
    answer,
    errors,
    header,
    json_body,
    links,
    nullable,
    obj,
    ref,
)
from gateway.keys import MAX_ACTIVE, MAX_BUDGET, MAX_BURST, MAX_NAME_LENGTH, MAX_RATE, SCOPES

TAG = "API keys"
_NAME: Schema = {
    **STRING,
    "minLength": 1,
    "maxLength": MAX_NAME_LENGTH,
    "description": "Printable characters only (no control, format or separator characters but "
    "the space); the spaces around it are trimmed.",
}
_LIMITS: dict[str, Schema] = {
    "rate_limit_per_second": nullable({**NUMBER, "minimum": 0, "maximum": MAX_RATE}),
    "rate_limit_burst": nullable({**INTEGER, "minimum": 1, "maximum": MAX_BURST}),
    "max_active_jobs": nullable({**INTEGER, "minimum": 0, "maximum": MAX_ACTIVE}),
}
_BUDGET: Schema = nullable(
    {
        **NUMBER,
        "minimum": 0,
        "maximum": MAX_BUDGET,
        "description": "In the catalog's currency; null: no budget.",
    }
)
_BUDGETS: dict[str, Schema] = {f"budget_{p}": _BUDGET for p in ("daily", "monthly", "total")}
_KEY_ID: Schema = {
    "name": "key_id",
    "in": "path",
    "required": True,
    "schema": {**STRING, "examples": ["key_0123456789abcdef"]},
}
_NO_STORE = {"Cache-Control": header("'no-store'.")}
_ADMIN = {403: "The key has no 'admin' scope."}


def keys_paths(c: Components) -> dict[str, Schema]:
    key = c.add(
        "ApiKey",
        obj(
            {
                "object": {"const": "api_key"},
                "id": STRING,
                "name": STRING,
                "prefix": {**STRING, "description": "The key's first characters."},
                "scopes": {"type": "array", "items": {"enum": sorted(SCOPES)}},
                "status": {"enum": ["active", "revoked"]},
                "created_at": UNIX_SECONDS,
                "revoked_at": nullable(UNIX_SECONDS),
                "limits": obj(_LIMITS, list(_LIMITS), description="null: the gateway's default."),
                "budgets": obj(
                    {
                        "daily": nullable(NUMBER),
                        "monthly": nullable(NUMBER),
                        "total": nullable(NUMBER),
                        "currency": STRING,
                    },
                    ("daily", "monthly", "total", "currency"),
                    description="The key's budgets (UTC day and month; null: none). A submit "
                    "whose estimate would cross one is refused (429 insufficient_quota).",
                ),
            },
            (
                "object",
                "id",
                "name",
                "prefix",
                "scopes",
                "status",
                "created_at",
                "revoked_at",
                "limits",
                "budgets",
            ),
        ),
    )
    created = {"allOf": [key, obj({"key": {**STRING, "description": "Shown this once."}})]}
    create = obj(
        {
            "name": _NAME,
            "scopes": nullable({"type": "array", "items": {"enum": sorted(SCOPES)}}),
            **_LIMITS,
            **_BUDGETS,
        },
        ("name",),
        additional=False,
    )
    update = obj({"name": _NAME, **_LIMITS, **_BUDGETS}, additional=False)
    listing = obj(
        {"object": {"const": "list"}, "data": {"type": "array", "items": key}, "has_more": BOOLEAN},
        ("object", "data", "has_more"),
    )
    common = {"security": API_KEY, "tags": [TAG]}

    def answers(ok: str, description: str, schema: Schema, *codes: int) -> Schema:
        follow = None
        if ok == "201":
            follow = links("key_id", "$response.body#/id", "getKey", "updateKey", "revokeKey")
        return {
            ok: answer(description, schema, headers=_NO_STORE, follow=follow),
            **errors("openai", 401, 403, *codes, notes=_ADMIN),
        }

    return {
        "/v1/keys": {
            "post": {
                **common,
                "operationId": "createKey",
                "summary": "Create an API key (its secret is shown once)",
                "requestBody": json_body(create),
                "responses": answers("201", "The key, with its secret.", created, 400, 413, 415),
            },
            "get": {
                **common,
                "operationId": "listKeys",
                "summary": "The stored keys, revoked ones included",
                "responses": answers("200", "The keys.", listing),
            },
        },
        "/v1/keys/{key_id}": {
            "get": {
                **common,
                "operationId": "getKey",
                "summary": "One key",
                "parameters": [_KEY_ID],
                "responses": answers("200", "The key.", ref("ApiKey"), 404),
            },
            "patch": {
                **common,
                "operationId": "updateKey",
                "summary": "Change a key's name, limits (null: default) or budgets (null: none)",
                "parameters": [_KEY_ID],
                "requestBody": json_body(update),
                "responses": answers("200", "The key.", ref("ApiKey"), 400, 404, 409, 413, 415),
            },
            "delete": {
                **common,
                "operationId": "revokeKey",
                "summary": "Revoke a key, at once on every replica",
                "parameters": [_KEY_ID],
                "responses": answers("200", "The revoked key.", ref("ApiKey"), 404, 409),
            },
        },
    }
