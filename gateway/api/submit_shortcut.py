"""The submit's shortcut: ``POST /v1/jobs/images`` handed to its route's own handler before
Starlette's exception layer and router.

The route's handler does all the work (auth, body, validation, the durable insert, the 202);
what the shortcut skips is what wraps it: the exception middleware's per-request wrapper, the
router's walk over the route table, the route's second exception wrapper and its ``send``
wrappers. Errors are answered by the handlers the app was given (the same table, looked up by
the exception's class as Starlette's exception middleware does) on the same ``Request``; an
exception no handler takes, or ``Exception``'s (the server-error layer's), propagates to
that layer outside, as it would from the route. Any other request - another path or method, a
query string, a mounted app's root path - goes on to the app unchanged.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute
from starlette.types import ASGIApp, Receive, Scope, Send

Endpoint = Callable[[Request], Awaitable[Response]]
Handler = Callable[[Request, Exception], Awaitable[Response]]


class SubmitShortcut:
    def __init__(
        self,
        app: ASGIApp,
        path: str,
        endpoint: Endpoint,
        route: BaseRoute,
        handlers: Mapping[Any, Handler],
    ) -> None:
        self.app = app
        self.path = path
        self.endpoint = endpoint
        self.handlers = {k: h for k, h in handlers.items() if k not in (Exception, 500)}
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
        except Exception as exc:
            handler = next(
                (self.handlers[c] for c in type(exc).__mro__ if c in self.handlers), None
            )
            if handler is None:
                raise
            response = await handler(request, exc)
        await response(scope, receive, send)
