"""The submit's shortcut: ``POST /v1/jobs/images`` handed to its route's own handler before
Starlette's exception layer and router.

The route's handler does all the work (auth, body, validation, the durable insert, the 202);
what the shortcut skips is what wraps it: the exception middleware's per-request wrapper, the
router's walk over the route table, the route's second exception wrapper and its ``send``
wrappers. Errors are answered by the app's own handlers (``GatewayError`` and the router's
``HTTPException``) on the same ``Request``; anything else propagates to the server-error
layer outside, as it would from the route. Any other request - another path or method, a
query string, a mounted app's root path - goes on to the app unchanged.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute
from starlette.types import ASGIApp, Receive, Scope, Send

from gateway.api.common import gateway_error_handler, http_error_handler
from gateway.errors import GatewayError

Endpoint = Callable[[Request], Awaitable[Response]]


class SubmitShortcut:
    def __init__(self, app: ASGIApp, path: str, endpoint: Endpoint, route: BaseRoute) -> None:
        self.app = app
        self.path = path
        self.endpoint = endpoint
        self.route = route  # the latency histogram labels the request by its template

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (
            scope["type"] != "http"
            or scope["method"] != "POST"
            or scope["path"] != self.path
            or scope["query_string"]
            or scope.get("root_path")
        ):
            await self.app(scope, receive, send)
            return
        scope["route"] = self.route
        scope["endpoint"] = self.endpoint
        request = Request(scope, receive, send)
        try:
            response = await self.endpoint(request)
        except GatewayError as exc:
            response = await gateway_error_handler(request, exc)
        except HTTPException as exc:
            response = await http_error_handler(request, exc)
        await response(scope, receive, send)
