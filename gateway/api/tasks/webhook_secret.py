"""The Tasks API's webhook signing secret: ``GET /api/v1/webhook_secret`` and
``POST /api/v1/webhook_secret/rotate``, with the Tasks API's JWTs.

A task's ``webhook_url`` deliveries are signed (Standard Webhooks) with the secret of the
task's owner, the token's ``sub``: the secret ``/v1/webhook_secret`` shows an API key whose
id is that ``sub``. A JWT client cannot call that route (it takes API keys), so these two
give it the same secret: read (made on first read) and rotate, errors in the Tasks API's
dialect (``{"detail": ...}``).

A token with a ``tenant`` claim acts for one tenant of its ``sub``, but the secret signs the
webhooks of every tenant's tasks: it gets a 403, since with the secret one tenant could forge
another's deliveries (and by rotating it, break their checks).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from gateway.api.common import json
from gateway.api.tasks.errors import gateway_error_handler
from gateway.api.tasks.jwt import Claims
from gateway.api.webhook_secrets import render_secret
from gateway.errors import GatewayError, PermissionDenied
from gateway.webhooks.secrets import WebhookSecret, WebhookSecrets

PATH = "/api/v1/webhook_secret"
_NO_STORE = {"Cache-Control": "no-store"}
#: what to do with an owner's secret: read it (made on first read), or rotate it
_SecretAction = Callable[[str], Awaitable[WebhookSecret]]


class TaskWebhookSecretAPI:
    def __init__(self, claims_of: Callable[[Request], Claims], secrets: WebhookSecrets) -> None:
        self.claims_of = claims_of
        self.secrets = secrets

    def routes(self) -> list[Route]:
        return [
            Route(PATH, self.read, methods=["GET"]),
            Route(f"{PATH}/rotate", self.rotate, methods=["POST"]),
        ]

    def _owner(self, request: Request) -> str:
        claims = self.claims_of(request)
        if claims.tenant is not None:
            raise PermissionDenied(
                f"This token acts for tenant '{claims.tenant}', but the webhook secret signs "
                f"the webhooks of every tenant of '{claims.sub}': read or rotate it with a "
                "token that has no 'tenant' claim."
            )
        return claims.sub

    async def read(self, request: Request) -> Response:
        return await self._answer(request, self.secrets.read)

    async def rotate(self, request: Request) -> Response:
        return await self._answer(request, self.secrets.rotate)

    async def _answer(self, request: Request, action: _SecretAction) -> Response:
        # outside the Tasks API's mount, so its errors are rendered in its dialect here
        try:
            secret = await action(self._owner(request))
        except GatewayError as exc:
            return await gateway_error_handler(request, exc)
        return json(render_secret(secret), headers=_NO_STORE)
