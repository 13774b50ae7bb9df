"""Each API key's webhook signing secret: ``GET /v1/webhook_secret`` and
``POST /v1/webhook_secret/rotate``.

The secret signs every webhook of the key's jobs (gateway/webhooks/secrets.py). A key sees
only its own secret.
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from gateway.api.common import json, principal
from gateway.webhooks.secrets import WebhookSecret, WebhookSecrets

_NO_STORE = {"Cache-Control": "no-store"}


def render_secret(secret: WebhookSecret) -> dict[str, object]:
    return {
        "object": "webhook_secret",
        "secret": secret.secret,
        "created_at": int(secret.created_at),
    }


class WebhookSecretsAPI:
    def __init__(self, secrets: WebhookSecrets) -> None:
        self.secrets = secrets

    def routes(self) -> list[Route]:
        return [
            Route("/v1/webhook_secret", self.read, methods=["GET"]),
            Route("/v1/webhook_secret/rotate", self.rotate, methods=["POST"]),
        ]

    async def read(self, request: Request) -> Response:
        who = await principal(request)
        secret = await self.secrets.read(who.owner)
        return json(render_secret(secret), headers=_NO_STORE)

    async def rotate(self, request: Request) -> Response:
        who = await principal(request)
        secret = await self.secrets.rotate(who.owner)
        return json(render_secret(secret), headers=_NO_STORE)
