"""Each API key's webhook signing secret: ``GET /v1/webhook_secret`` and
``POST /v1/webhook_secret/rotate``.

The secret (``whsec_`` + base64 of 32 random bytes) signs every webhook of the key's jobs
(Standard Webhooks). It is created on first read; rotating replaces it at once, and
deliveries still pending are signed with the new one. A key sees only its own secret.
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from gateway.api.common import json, principal
from gateway.store.base import JobStore, WebhookSecret

_NO_STORE = {"Cache-Control": "no-store"}


def render_secret(secret: WebhookSecret) -> dict[str, object]:
    return {
        "object": "webhook_secret",
        "secret": secret.secret,
        "created_at": int(secret.created_at),
    }


class WebhookSecretsAPI:
    def __init__(self, store: JobStore) -> None:
        self.store = store

    def routes(self) -> list[Route]:
        return [
            Route("/v1/webhook_secret", self.read, methods=["GET"]),
            Route("/v1/webhook_secret/rotate", self.rotate, methods=["POST"]),
        ]

    async def read(self, request: Request) -> Response:
        who = await principal(request)
        secret = await self.store.get_or_create_webhook_secret(who.owner)
        return json(render_secret(secret), headers=_NO_STORE)

    async def rotate(self, request: Request) -> Response:
        who = await principal(request)
        secret = await self.store.rotate_webhook_secret(who.owner)
        return json(render_secret(secret), headers=_NO_STORE)
