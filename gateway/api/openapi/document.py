"""``GET /openapi.json``: the gateway's OpenAPI 3.1 document, every face in one.

The document is made from what this gateway runs: its catalog (the ``model`` fields list its
models), its settings (``/metrics`` only when served, the Back.Serv task API without
credentials under ``BACKSERV_SUBMIT_TASK_AUTH=none``) and the pydantic models the faces
validate with. It is built on the first request and kept (bytes), since none of that changes
while the process runs.
"""

from __future__ import annotations

from dataclasses import dataclass
from importlib import metadata
from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from gateway.api.openapi.backserv import backserv_paths
from gateway.api.openapi.catalog import models_paths
from gateway.api.openapi.components import Components, security_schemes
from gateway.api.openapi.jobs import jobs_paths
from gateway.api.openapi.keys import keys_paths
from gateway.api.openapi.openai_media import openai_media_paths
from gateway.api.openapi.operations import operations_paths
from gateway.api.openapi.tasks import tasks_paths
from gateway.api.openapi.usage import usage_paths
from gateway.catalog import Catalog

PATH = "/openapi.json"
DESCRIPTION = """\
An asynchronous, OpenAI-style jobs gateway for generative media. Faces:

- **Jobs API** (`/v1/jobs*`), **OpenAI images** (`/v1/images/generations`,
  `/v1/images/edits`), **OpenAI videos** (`/v1/videos*`), **models**
  (`/v1/models`), **webhook secrets** and **API keys** (`/v1/keys`, `admin` keys):
  `Authorization: Bearer <API key>`, errors in OpenAI's envelope
  `{"error": {"message", "type", "param", "code"}}`.
- **Back.Serv task API** (`/submit_task`, `/query_task/{id}`, `/cancel_task/{id}`): the same
  API keys, errors as `{"error", "message"}`.
- **Tasks API** (`/api/v1/tasks`, and its webhook secret `/api/v1/webhook_secret`): HS256 JWT
  bearer tokens, errors as `{"detail": ...}`.
- **Operations** (`/healthz`, `/readyz`, `/metrics`), result files and the web pages: no key.

Every response carries `x-request-id`.
"""


def _version() -> str:
    try:
        return metadata.version("backserv")
    except metadata.PackageNotFoundError:  # pragma: no cover - run from a bare checkout
        return "0.0.0"


@dataclass(frozen=True)
class DocumentOptions:
    """What of the configuration the document shows: the server's URL, whether the Back.Serv
    task API asks for a key, and whether (and how) ``/metrics`` is served."""

    base_url: str
    submit_task_keyed: bool = True
    metrics_enabled: bool = True
    metrics_token: bool = False


def build_document(options: DocumentOptions, catalog: Catalog) -> dict[str, Any]:
    c = Components()
    c.error_schemas()
    paths = {
        **jobs_paths(c, catalog),
        **openai_media_paths(c, catalog),
        **models_paths(c),
        **keys_paths(c),
        **usage_paths(c),
        **backserv_paths(c, keyed=options.submit_task_keyed),
        **tasks_paths(c),
        **operations_paths(metrics=options.metrics_enabled, metrics_token=options.metrics_token),
    }
    schemes = security_schemes()
    if options.metrics_enabled and options.metrics_token:
        schemes["MetricsToken"] = {
            "type": "http",
            "scheme": "bearer",
            "description": "BACKSERV_METRICS_TOKEN.",
        }
    return {
        "openapi": "3.1.0",
        "info": {"title": "Back.Serv", "version": _version(), "description": DESCRIPTION},
        "servers": [{"url": options.base_url}],
        "paths": paths,
        "components": {"schemas": c.schemas, "securitySchemes": schemes},
    }


class OpenAPIDocument:
    def __init__(self, options: DocumentOptions, catalog: Catalog) -> None:
        self.options = options
        self.catalog = catalog
        self._body: bytes | None = None

    def routes(self) -> list[Route]:
        return [Route(PATH, self.serve, methods=["GET"])]

    def body(self) -> bytes:
        if self._body is None:
            self._body = orjson.dumps(build_document(self.options, self.catalog))
        return self._body

    async def serve(self, request: Request) -> Response:
        return Response(self.body(), media_type="application/json")
