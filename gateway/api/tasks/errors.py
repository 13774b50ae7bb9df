"""Errors in the Tasks API's dialect (FastAPI's): ``{"detail": "..."}``, and for a 422 the
document's ``HTTPValidationError``: ``{"detail": [{"loc": [...], "msg": "...", "type": "..."}]}``.

Every ``GatewayError`` raised under ``/api/v1/tasks`` (the core's included) is rendered here,
with its own status and headers, so this face never answers in the OpenAI envelope.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from pydantic import ValidationError
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response

from gateway.api.common import error_headers, json
from gateway.errors import GatewayError

log = logging.getLogger("backserv.api.tasks")

Loc = Sequence[str | int]


class TaskValidationError(GatewayError):
    """A 422 whose body is the document's ``HTTPValidationError``."""

    status_code = 422
    error_type = "invalid_request_error"

    def __init__(self, detail: list[dict[str, Any]]) -> None:
        super().__init__(str(detail[0]["msg"]) if detail else "Validation error")
        self.detail = detail

    def body(self) -> dict[str, Any]:
        return {"detail": self.detail}


def invalid(loc: Loc, msg: str, kind: str = "value_error") -> TaskValidationError:
    return TaskValidationError([{"loc": list(loc), "msg": msg, "type": kind}])


def from_pydantic(exc: ValidationError, prefix: Loc = ("body",)) -> TaskValidationError:
    return TaskValidationError(
        [
            {"loc": [*prefix, *err["loc"]], "msg": err["msg"], "type": err["type"]}
            for err in exc.errors(include_url=False)
        ]
    )


def detail_body(exc: GatewayError) -> dict[str, Any]:
    if isinstance(exc, TaskValidationError):
        return exc.body()
    return {"detail": exc.message}


async def gateway_error_handler(request: Request, exc: Exception) -> Response:
    if not isinstance(exc, GatewayError):  # pragma: no cover - registered for GatewayError
        raise exc
    if exc.status_code >= 500 and exc.status_code != 501:
        log.error("tasks request failed: %s", exc.message)
    return json(detail_body(exc), exc.status_code, exc.headers())


async def http_error_handler(request: Request, exc: Exception) -> Response:
    if not isinstance(exc, HTTPException):  # pragma: no cover
        raise exc
    return json({"detail": exc.detail}, exc.status_code, error_headers(request, exc))


class NotConfigured(GatewayError):
    """503 without Retry-After: the operator must configure something first."""

    status_code = 503
    error_type = "service_unavailable"
