"""The poll's shortcut: ``GET /v1/jobs/{id}`` answered from the cache of rendered jobs
before Starlette's exception layer, router, ``Request`` and ``Response`` objects.

Polling is what clients do most; when the job's rendered body is in ``JobViews`` and the
caller may read it, the answer is two ASGI messages. Anything else - a query string
(``?wait=``), no cached body, a key that fails to authenticate, another owner's job - goes
on to the app unchanged, which answers exactly as it always does (errors included), so the
shortcut never decides anything the route would decide differently.
"""

from __future__ import annotations

from starlette.routing import BaseRoute
from starlette.types import ASGIApp, Receive, Scope, Send

from gateway.api.job_views import JobViews
from gateway.auth import KeyRing
from gateway.errors import GatewayError

PREFIX = "/v1/jobs/"
_JSON = (b"content-type", b"application/json")


class PollShortcut:
    def __init__(self, app: ASGIApp, views: JobViews, keyring: KeyRing, route: BaseRoute) -> None:
        self.app = app
        self.views = views
        self.keyring = keyring
        self.route = route  # the poll's route: the latency histogram labels by its template

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        body = await self._cached(scope) if scope["type"] == "http" else None
        if body is None:
            await self.app(scope, receive, send)
            return
        scope["route"] = self.route
        length = (b"content-length", str(len(body)).encode())
        await send({"type": "http.response.start", "status": 200, "headers": [length, _JSON]})
        await send({"type": "http.response.body", "body": body})

    async def _cached(self, scope: Scope) -> bytes | None:
        """The rendered job this request may read, or None (the app answers it)."""
        path: str = scope["path"]
        if scope["method"] != "GET" or scope["query_string"] or not path.startswith(PREFIX):
            return None
        job_id = path[len(PREFIX) :]
        if not job_id or "/" in job_id or scope.get("root_path"):
            return None
        view = self.views.get(job_id)
        if view is None:
            return None
        header = next((v for k, v in scope["headers"] if k == b"authorization"), None)
        try:
            # latin-1, as Starlette's Headers decode (every byte maps: it cannot fail)
            who = await self.keyring.authenticate(
                None if header is None else header.decode("latin-1")
            )
        except GatewayError:
            return None  # the route says why, as ever
        if not (who.is_admin or view.owner == who.owner):
            return None
        return view.body
