"""Pieces every face shares: JSON in and out, auth, query parsing, the error renderer."""

from __future__ import annotations

import logging
from typing import Any

import orjson
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from gateway.auth import Principal
from gateway.digits import parse_digits
from gateway.errors import (
    GatewayError,
    InvalidRequest,
    NotFound,
    PayloadTooLarge,
    UnsupportedMediaType,
)

log = logging.getLogger("backserv.api")


class FastJSON(JSONResponse):
    media_type = "application/json"

    def render(self, content: Any) -> bytes:
        return orjson.dumps(content)


def json(content: Any, status_code: int = 200, headers: dict[str, str] | None = None) -> Response:
    return FastJSON(content, status_code=status_code, headers=headers)


#: how deeply a request body may nest objects and arrays (no API needs more than a few)
MAX_JSON_DEPTH = 32


async def read_body(request: Request, max_bytes: int) -> bytes:
    """The raw request body; 413 as soon as it is known to pass ``max_bytes`` (its declared
    length first, then as it streams in), never buffering more than that."""
    length = parse_digits(request.headers.get("content-length", ""))
    if length is not None and length > max_bytes:
        raise PayloadTooLarge(
            f"The request body is {length} bytes; the limit is {max_bytes}.",
            code="body_too_large",
        )
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > max_bytes:
            raise PayloadTooLarge(
                f"The request body exceeds the limit of {max_bytes} bytes.", code="body_too_large"
            )
        chunks.append(chunk)
    return b"".join(chunks)


async def read_json(request: Request, max_bytes: int) -> dict[str, Any]:
    """The request body as a JSON object, or a 400/413/415 that says what is wrong."""
    ctype = request.headers.get("content-type")
    if ctype is not None:
        media = ctype.split(";", 1)[0].strip().lower()
        if media != "application/json" and not media.endswith("+json"):
            raise UnsupportedMediaType(
                f"The request body must be JSON; got Content-Type '{media}'.",
                code="unsupported_media_type",
            )
    body = await read_body(request, max_bytes)
    if not body.strip():
        raise InvalidRequest("The request body is empty; send a JSON object.", code="empty_body")
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise InvalidRequest(
            f"The request body is not valid JSON ({exc.msg} at position {exc.pos}).",
            code="invalid_json",
        ) from None
    if not isinstance(data, dict):
        raise InvalidRequest("The request body must be a JSON object.", code="invalid_json")
    # a body with fewer brackets than the limit cannot nest deeper: no walk (the hot path)
    if body.count(b"{") + body.count(b"[") > MAX_JSON_DEPTH and _deeper_than(data, MAX_JSON_DEPTH):
        raise InvalidRequest(
            f"The request body nests objects and arrays more than {MAX_JSON_DEPTH} levels deep.",
            code="json_too_deep",
        )
    return data


def _deeper_than(data: Any, limit: int) -> bool:
    """True when ``data`` nests dicts/lists more than ``limit`` levels (the top one is 1).

    Iterative (an explicit stack), so no recursion limit is at stake; orjson itself refuses
    more than 1024 levels while parsing, so what is walked here is already bounded."""
    stack: list[tuple[Any, int]] = [(data, 1)]
    while stack:
        node, depth = stack.pop()
        if depth > limit:
            return True
        children = node.values() if isinstance(node, dict) else node
        stack.extend((c, depth + 1) for c in children if isinstance(c, dict | list))
    return False


async def principal(request: Request) -> Principal:
    keyring = request.app.state.keyring
    result: Principal = await keyring.authenticate(request.headers.get("authorization"))
    return result


def query_int(request: Request, name: str, default: int, lo: int, hi: int) -> int:
    raw = request.query_params.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise InvalidRequest(
            f"Invalid '{name}': must be an integer between {lo} and {hi}.",
            param=name,
            code="invalid_value",
        ) from None
    if not lo <= value <= hi:
        raise InvalidRequest(
            f"Invalid '{name}': must be between {lo} and {hi} (got {value}).",
            param=name,
            code="out_of_range",
        )
    return value


def body_str(body: dict[str, Any], name: str, *, required: bool = True) -> str | None:
    value = body.get(name)
    if value is None:
        if required:
            raise InvalidRequest(
                f"Missing required parameter '{name}'.", param=name, code="missing_parameter"
            )
        return None
    if not isinstance(value, str):
        raise InvalidRequest(
            f"Invalid '{name}': must be a string.", param=name, code="invalid_type"
        )
    return value


def body_int(body: dict[str, Any], name: str, default: int, lo: int, hi: int) -> int:
    """``name`` as an integer; a number with no fraction (``5.0``) is one, as in JSON Schema."""
    value = body.get(name, default)
    if value is None:
        return default
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidRequest(
            f"Invalid '{name}': must be an integer.", param=name, code="invalid_type"
        )
    if not lo <= value <= hi:
        raise InvalidRequest(
            f"Invalid '{name}': must be between {lo} and {hi} (got {value}).",
            param=name,
            code="out_of_range",
        )
    return value


async def gateway_error_handler(request: Request, exc: Exception) -> Response:
    if not isinstance(exc, GatewayError):  # pragma: no cover - registered for GatewayError
        raise exc
    if exc.status_code >= 500:
        log.error("request failed: %s", exc.message)
    return json(exc.body(), exc.status_code, exc.headers())


async def http_error_handler(request: Request, exc: Exception) -> Response:
    if not isinstance(exc, HTTPException):  # pragma: no cover
        raise exc
    if exc.status_code == 404:
        err: GatewayError = NotFound(
            f"No route for {request.method} {request.url.path}.", code="unknown_route"
        )
    else:
        err = GatewayError(str(exc.detail), code=f"http_{exc.status_code}")
        err.status_code = exc.status_code
        err.error_type = "invalid_request_error" if exc.status_code < 500 else "server_error"
    return json(err.body(), exc.status_code, error_headers(request, exc))


def error_headers(request: Request, exc: HTTPException) -> dict[str, str]:
    """The headers of the router's own error answer; a 405's ``Allow`` lists every method of
    the path, not only those of the one route Starlette's router picked."""
    headers = dict(exc.headers or {})
    if exc.status_code == 405:
        headers["Allow"] = allowed_methods(request) or headers.get("Allow", "")
    return headers


def allowed_methods(request: Request) -> str:
    """The methods of every route of the app that share the path template of the route that
    answered 405 (``/v1/keys`` is one route for POST and one for GET).

    Starlette answers 405 from the first route whose path matched with another method: the
    literal route comes first in every face's table, so ``PUT /v1/jobs/images`` lists only
    ``POST`` — not the ``GET`` of ``/v1/jobs/{job_id}``, which can only answer it a 404.
    Worked out only for a 405: a request that matches a route costs nothing more."""
    picked = request.scope.get("route")
    if not isinstance(picked, Route):
        return ""
    methods: set[str] = set()
    for route in request.app.router.routes:
        if isinstance(route, Route) and route.path == picked.path and route.methods:
            methods |= route.methods
    return ", ".join(sorted(methods))


async def unhandled_error_handler(request: Request, exc: Exception) -> Response:
    log.exception("unhandled error on %s %s", request.method, request.url.path)
    # this answer is made outside the request-id middleware, so it adds the header itself
    rid = request.scope.get("state", {}).get("request_id")
    return json(GatewayError().body(), 500, {"x-request-id": rid} if rid else None)
