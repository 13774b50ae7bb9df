"""The document's models face: ``GET /v1/models`` and ``GET /v1/models/{model_id}``
(``gateway/api/models.py``), the catalog in OpenAI's list format."""

from __future__ import annotations

from gateway.api.openapi.components import (
    ANY_OBJECT,
    API_KEY,
    BOOLEAN,
    INTEGER,
    STRING,
    Components,
    Schema,
    answer,
    errors,
    nullable,
    obj,
    ref,
)
from gateway.kinds import KINDS

TAG = "Models"


def _model_schema(c: Components) -> Schema:
    route = obj(
        {
            "provider": STRING,
            "target": STRING,
            "role": {"enum": ["primary", "fallback"]},
            "available": BOOLEAN,
            "reason": {**nullable(STRING), "description": "Why the route cannot run."},
            "circuit": {**STRING, "description": "The route's circuit breaker state."},
        },
        ("provider", "target", "role", "available", "reason", "circuit"),
    )
    return c.add(
        "Model",
        obj(
            {
                "id": STRING,
                "object": {"const": "model"},
                "created": INTEGER,
                "owned_by": STRING,
                "kind": {"enum": list(KINDS)},
                "description": STRING,
                "jobs_only": {
                    **BOOLEAN,
                    "description": "Only through POST /v1/jobs*, not /v1/images/generations.",
                },
                "available": {**BOOLEAN, "description": "At least one route can run."},
                "parameters": {
                    **ANY_OBJECT,
                    "description": "The input's JSON Schema, with this model's defaults "
                    "and bounds.",
                },
                "routes": {"type": "array", "items": route},
            },
            (
                "id",
                "object",
                "created",
                "owned_by",
                "kind",
                "description",
                "jobs_only",
                "available",
                "parameters",
                "routes",
            ),
        ),
    )


def models_paths(c: Components) -> dict[str, Schema]:
    model = _model_schema(c)
    listing = obj(
        {"object": {"const": "list"}, "data": {"type": "array", "items": model}},
        ("object", "data"),
    )
    return {
        "/v1/models": {
            "get": {
                "security": API_KEY,
                "tags": [TAG],
                "operationId": "listModels",
                "summary": "The catalog",
                "parameters": [
                    {
                        "name": "kind",
                        "in": "query",
                        "schema": {"enum": list(KINDS)},
                        "description": "Only models of this kind.",
                    }
                ],
                "responses": {
                    "200": answer("The models.", listing),
                    **errors("openai", 400, 401),
                },
            }
        },
        "/v1/models/{model_id}": {
            "get": {
                "security": API_KEY,
                "tags": [TAG],
                "operationId": "getModel",
                "summary": "One model",
                "parameters": [
                    {
                        "name": "model_id",
                        "in": "path",
                        "required": True,
                        "schema": {**STRING, "examples": ["sandbox-image"]},
                        "description": "A model id; it may contain '/' (send it as %2F).",
                    }
                ],
                "responses": {
                    "200": answer("The model.", ref("Model")),
                    **errors("openai", 401, 404),
                },
            }
        },
    }
