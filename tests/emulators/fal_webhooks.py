"""fal's webhooks: what a request POSTs to its ``fal_webhook`` URL when it ends, and how it is
signed.

The body is ``request_id``, ``gateway_request_id`` (the same id here: no gateway retries),
``status`` (``OK`` or ``ERROR``), ``payload`` (what the result GET answers: the output, or on
ERROR the error body) and ``error`` (``"Invalid status code: N"`` on ERROR, else null), as
fal's webhooks page shows them. The headers: ``X-Fal-Webhook-Request-Id``, ``-User-Id``,
``-Timestamp`` (unix seconds) and ``-Signature``, the hex Ed25519 signature of the request id,
user id, timestamp and hex SHA-256 of the raw body joined by newlines. The emulator makes its
key when it is built and publishes it as a JWKS at ``GET /.well-known/jwks.json`` (fal's is
at https://rest.alpha.fal.ai/.well-known/jwks.json).
"""

from __future__ import annotations

import base64
import hashlib
from typing import TYPE_CHECKING, Any, cast

import orjson
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from tests.emulators.control import json_response
from tests.emulators.webhook_types import PlannedEvent, WebhookFormat

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    from tests.emulators.fal_state import FalEmulator, FalJob

JWKS_PATH = "/.well-known/jwks.json"
USER_ID = "emulator-user"


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _new_key() -> Ed25519PrivateKey:
    # imported here: an emulator that never signs runs without the dev extra's cryptography
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    return Ed25519PrivateKey.generate()


class FalSigner:
    """The emulator's Ed25519 key (made on first use), its JWKS, and fal's signed message."""

    def __init__(self, user_id: str = USER_ID) -> None:
        self.user_id = user_id
        self._key: Ed25519PrivateKey | None = None

    @property
    def key(self) -> Ed25519PrivateKey:
        if self._key is None:
            self._key = _new_key()
        return self._key

    @property
    def public_key(self) -> bytes:
        from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

        return self.key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)

    @property
    def kid(self) -> str:
        return hashlib.sha256(self.public_key).hexdigest()[:16]

    def jwks(self) -> dict[str, Any]:
        key = {
            "kty": "OKP",
            "crv": "Ed25519",
            "x": _b64url(self.public_key),
            "kid": self.kid,
            "alg": "EdDSA",
            "use": "sig",
        }
        return {"keys": [key]}

    def headers(
        self, request_id: str, body: bytes, timestamp: int, *, forged: bool = False
    ) -> dict[str, str]:
        message = "\n".join(
            (request_id, self.user_id, str(timestamp), hashlib.sha256(body).hexdigest())
        ).encode()
        key = _new_key() if forged else self.key
        return {
            "x-fal-webhook-request-id": request_id,
            "x-fal-webhook-user-id": self.user_id,
            "x-fal-webhook-timestamp": str(timestamp),
            "x-fal-webhook-signature": key.sign(message).hex(),
        }


class FalWebhooks(WebhookFormat):
    """One ``completed`` event per request, when it ends (run, failure, cancel or timeout)."""

    def __init__(self, state: FalEmulator, signer: FalSigner) -> None:
        self._state = state
        self.signer = signer

    def plan(self, job: Any) -> list[PlannedEvent]:
        request = cast("FalJob", job)
        ended = request.timeline.ended_at()
        return [PlannedEvent(ended, "completed", "completed", terminal=True)]

    def render(self, job: Any, event: PlannedEvent) -> bytes:
        request = cast("FalJob", job)
        status, payload, _ = self._state.result_of(request)
        ok = status == 200
        body = {
            "request_id": request.request_id,
            "gateway_request_id": request.request_id,
            "status": "OK" if ok else "ERROR",
            "payload": payload,
            "error": None if ok else f"Invalid status code: {status}",
        }
        return orjson.dumps(body)

    def sign(
        self, job: Any, message_id: str, body: bytes, timestamp: int, *, forged: bool
    ) -> dict[str, str]:
        request = cast("FalJob", job)
        return self.signer.headers(request.request_id, body, timestamp, forged=forged)


async def _jwks(request: Request) -> Response:
    state = cast("FalEmulator", request.app.state.emulator)
    return json_response(state.signer.jwks())


jwks_route = Route(JWKS_PATH, _jwks, methods=["GET"])
