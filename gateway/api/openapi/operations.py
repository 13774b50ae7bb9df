"""The document's keyless routes: probes, metrics, result files, the web pages and the
document itself (``gateway/api/health.py``, ``files.py``, ``gateway/web/``)."""

from __future__ import annotations

from gateway.api.openapi.components import (
    ANY_OBJECT,
    BOOLEAN,
    STRING,
    Schema,
    answer,
    errors,
    header,
    json_body,
    obj,
)

HTML = "text/html"
_FILE: Schema = {"type": "string", "format": "binary"}
_CHECKS = ("database", "scheduler", "providers")


def _readiness() -> Schema:
    route = obj({"model": STRING, "route": STRING, "reason": STRING}, ("model", "route", "reason"))
    return obj(
        {
            "status": {"enum": ["ready", "not_ready"]},
            "checks": obj(
                {
                    **{name: BOOLEAN for name in _CHECKS},
                    "database_error": {**STRING, "description": "The error's class name."},
                },
                _CHECKS,
            ),
            "failed": {"type": "array", "items": {"enum": list(_CHECKS)}},
            "providers": obj(
                {
                    "routes_unavailable": {"type": "array", "items": route},
                    "models_unavailable": {"type": "array", "items": STRING},
                },
                ("routes_unavailable", "models_unavailable"),
                description="Routes and models that cannot run: a warning, not a failure "
                "(unless no model can run).",
            ),
        },
        ("status", "checks", "failed", "providers"),
    )


def _page(op_id: str, summary: str, **extra: object) -> Schema:
    return {
        "get": {
            "tags": ["Web pages"],
            "operationId": op_id,
            "summary": summary,
            "security": [],
            **extra,
            "responses": {"200": answer("The page.", STRING, media=HTML)},
        }
    }


def operations_paths(*, metrics: bool, metrics_token: bool) -> dict[str, Schema]:
    """``metrics``: /metrics is served; ``metrics_token``: it asks for that bearer token."""
    keyless = {"security": [], "tags": ["Operations"]}
    readiness = _readiness()
    paths: dict[str, Schema] = {
        "/healthz": {
            "get": {
                **keyless,
                "operationId": "healthz",
                "summary": "Liveness: the process serves requests",
                "responses": {
                    "200": answer("Alive.", obj({"status": {"const": "ok"}}, ("status",)))
                },
            }
        },
        "/readyz": {
            "get": {
                **keyless,
                "operationId": "readyz",
                "summary": "Readiness: database, scheduler, at least one runnable model",
                "responses": {
                    "200": answer("Ready.", readiness),
                    "503": answer("Not ready: 'failed' names the checks.", readiness),
                },
            }
        },
        "/files/{job_id}/{name}": {
            "get": {
                **keyless,
                "tags": ["Jobs API"],
                "operationId": "getResultFile",
                "summary": "A result file, by the signed URL in the job's result",
                "parameters": [
                    {"name": "job_id", "in": "path", "required": True, "schema": STRING},
                    {"name": "name", "in": "path", "required": True, "schema": STRING},
                    {
                        "name": "expires",
                        "in": "query",
                        "required": True,
                        "schema": {**STRING, "pattern": "^[0-9]+$"},
                        "description": "Unix time the URL stops working.",
                    },
                    {"name": "sig", "in": "query", "required": True, "schema": STRING},
                ],
                "responses": {
                    "200": answer("The file.", _FILE, media="*/*"),
                    **errors(
                        "openai",
                        403,
                        404,
                        410,
                        notes={
                            403: "The URL is not signed, or its signature is wrong.",
                            410: "The URL has expired, or retention deleted the file.",
                        },
                    ),
                },
            }
        },
        "/v1/provider_webhooks/{provider}": {
            "post": {
                **keyless,
                "tags": ["Operations"],
                "operationId": "providerWebhook",
                "summary": "A hosted provider's webhook delivery (fal, Replicate)",
                "description": (
                    "Called by fal and Replicate when BACKSERV_PROVIDER_WEBHOOKS is on, "
                    "never by clients. Each delivery is verified in its vendor's format "
                    "(fal: Ed25519 with its published keys; Replicate: Standard Webhooks); "
                    "a forged, altered or replayed one is a 401 and changes nothing."
                ),
                "parameters": [
                    {"name": "provider", "in": "path", "required": True, "schema": STRING},
                    {"name": "job", "in": "query", "schema": STRING},
                ],
                "requestBody": json_body(ANY_OBJECT),
                "responses": {
                    "200": answer(
                        "Received and handed to the job's runner.",
                        obj({"received": {"const": True}}, ("received",)),
                    ),
                    **errors(
                        "openai",
                        400,
                        401,
                        404,
                        413,
                        503,
                        notes={
                            401: "The signature does not verify, or its timestamp is stale.",
                            404: "No such provider, or its webhooks are off.",
                            503: "The provider's keys could not be fetched; it delivers again.",
                        },
                    ),
                },
            }
        },
        "/openapi.json": {
            "get": {
                **keyless,
                "operationId": "openapi",
                "summary": "This document",
                "responses": {"200": answer("The OpenAPI document.", ANY_OBJECT)},
            }
        },
        "/": _page(
            "catalogPage",
            "The catalog browser",
            parameters=[
                {"name": name, "in": "query", "schema": STRING}
                for name in ("q", "kind", "provider", "available")
            ],
        ),
        "/models/{model_id}": {
            "get": {
                **_page("modelPage", "A model's page, with examples")["get"],
                "parameters": [
                    {"name": "model_id", "in": "path", "required": True, "schema": STRING}
                ],
                "responses": {
                    "200": answer("The page.", STRING, media=HTML),
                    "404": answer("No such model: a page that says so.", STRING, media=HTML),
                },
            }
        },
        "/playground": _page("playgroundPage", "The playground"),
        "/jobs": _page("jobsPage", "The key's recent jobs (the page asks for the key)"),
        "/jobs/{job_id}": _page(
            "jobPage",
            "One job: live status, input, attempts, webhook deliveries, outputs (the page "
            "asks for the key)",
            parameters=[{"name": "job_id", "in": "path", "required": True, "schema": STRING}],
        ),
        "/compare": _page(
            "comparePage",
            "One prompt on two to four models side by side",
            parameters=[
                {
                    "name": "model",
                    "in": "query",
                    "schema": {"type": "array", "items": STRING},
                    "style": "form",
                    "explode": True,
                }
            ],
        ),
        "/docs": _page("docsPage", "This API reference, rendered (Swagger UI)"),
        "/usage": _page("usagePage", "What the key spent, by day, model and provider"),
        "/examples/{model_id}": {
            "get": {
                "tags": ["Web pages"],
                "operationId": "modelExampleImage",
                "summary": "A catalog model's example image (never a job's output)",
                "security": [],
                "parameters": [
                    {"name": "model_id", "in": "path", "required": True, "schema": STRING}
                ],
                "responses": {
                    "200": answer("The image.", _FILE, media="image/*"),
                    "404": answer("The model has no example.", STRING, media="text/plain"),
                },
            }
        },
        "/static/{path}": {
            "get": {
                "tags": ["Web pages"],
                "operationId": "staticAsset",
                "summary": "The pages' scripts, styles and images",
                "security": [],
                "parameters": [{"name": "path", "in": "path", "required": True, "schema": STRING}],
                "responses": {
                    "200": answer("The file.", _FILE, media="*/*"),
                    **errors("openai", 404),
                },
            }
        },
    }
    if metrics:
        text = {"type": "string"}
        media = {
            "text/plain": {"schema": text},
            "application/openmetrics-text": {"schema": text},
        }
        responses: Schema = {"200": {"description": "The metrics.", "content": media}}
        if metrics_token:
            responses["401"] = answer(
                "Missing or wrong token.",
                text,
                media="text/plain",
                headers={"WWW-Authenticate": header("'Bearer'.")},
            )
        paths["/metrics"] = {
            "get": {
                "tags": ["Operations"],
                "operationId": "metrics",
                "summary": "Prometheus metrics (OpenMetrics when asked for)",
                "security": [{"MetricsToken": []}] if metrics_token else [],
                "responses": responses,
            }
        }
    return paths
