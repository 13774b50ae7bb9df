"""A webhook endpoint for tests: it records every POST and answers what the test queued;
and fal's signature check, written from fal's docs apart from the emulator's signer.

receiver = Receiver()
async with serve(receiver.app) as base_url:   # or httpx.ASGITransport(app=receiver.app)
    url = f"{base_url}/hook"
    ...
    [delivery] = await receiver.wait_for(1)
    assert fal_signature_verifies(jwks, delivery.headers, delivery.body)
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import orjson
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route


@dataclass(frozen=True)
class Received:
    """One POST as it arrived: the raw body, the headers (lower-case names), what it got."""

    path: str
    query: str
    headers: dict[str, str]
    body: bytes
    status: int

    def json(self) -> Any:
        return orjson.loads(self.body)


class Receiver:
    """Answers each POST with the next queued ``statuses`` (200 once they run out), after
    ``hang`` seconds; ``received`` lists them in order of arrival."""

    def __init__(self) -> None:
        self.received: list[Received] = []
        self.statuses: deque[int] = deque()
        self.hang = 0.0
        self._arrived = asyncio.Event()
        self.app = Starlette(routes=[Route("/{path:path}", self._handle, methods=["POST"])])

    async def _handle(self, request: Request) -> Response:
        body = await request.body()
        status = self.statuses.popleft() if self.statuses else 200
        self.received.append(
            Received(
                path=request.url.path,
                query=request.url.query,
                headers=dict(request.headers),
                body=body,
                status=status,
            )
        )
        self._arrived.set()
        if self.hang:
            await asyncio.sleep(self.hang)
        return Response(b"", status)

    async def wait_for(self, count: int, timeout: float = 5.0) -> list[Received]:
        """The first ``count`` POSTs, once they have arrived."""
        async with asyncio.timeout(timeout):
            while len(self.received) < count:
                self._arrived.clear()
                await self._arrived.wait()
        return self.received[:count]


def fal_signature_verifies(
    jwks: Mapping[str, Any], headers: Mapping[str, str], body: bytes
) -> bool:
    """fal's check: some Ed25519 key of the JWKS signed the request id, user id, timestamp and
    hex sha256 of the raw body, one per line."""
    from cryptography.exceptions import InvalidSignature
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

    message = "\n".join(
        [
            headers["x-fal-webhook-request-id"],
            headers["x-fal-webhook-user-id"],
            headers["x-fal-webhook-timestamp"],
            hashlib.sha256(body).hexdigest(),
        ]
    ).encode()
    signature = bytes.fromhex(headers["x-fal-webhook-signature"])
    for jwk in jwks["keys"]:
        if (jwk.get("kty"), jwk.get("crv")) != ("OKP", "Ed25519"):
            continue
        raw = base64.urlsafe_b64decode(jwk["x"] + "=" * (-len(jwk["x"]) % 4))
        try:
            Ed25519PublicKey.from_public_bytes(raw).verify(signature, message)
        except InvalidSignature:
            continue
        return True
    return False
