"""Each owner's webhook signing secret, as the faces read and rotate it.

The secret (``whsec_`` + base64 of 32 random bytes) signs every webhook of the owner's jobs
(Standard Webhooks). It is created on first read; rotating replaces it at once, and
deliveries still pending are signed with the new one.
"""

from __future__ import annotations

from typing import Protocol

from gateway.store.base import WebhookSecret

__all__ = ["SecretStore", "WebhookSecret", "WebhookSecrets"]


class SecretStore(Protocol):
    async def get_or_create_webhook_secret(self, owner: str) -> WebhookSecret: ...

    async def rotate_webhook_secret(self, owner: str) -> WebhookSecret: ...


class WebhookSecrets:
    def __init__(self, store: SecretStore) -> None:
        self.store = store

    async def read(self, owner: str) -> WebhookSecret:
        return await self.store.get_or_create_webhook_secret(owner)

    async def rotate(self, owner: str) -> WebhookSecret:
        return await self.store.rotate_webhook_secret(owner)
