"""fal's webhooks, received: the signature checked against fal's published keys, and the body
read into the state a poll would have produced.

A delivery carries ``X-Fal-Webhook-Request-Id``, ``-User-Id``, ``-Timestamp`` (unix seconds)
and ``-Signature``: the hex Ed25519 signature of the request id, user id, timestamp and hex
SHA-256 of the raw body, joined by newlines. fal names no key: any key of its JWKS (``kty``
OKP, ``crv`` Ed25519, ``x`` base64url) may have signed it. The JWKS is fetched on first use
and kept an hour; a signature no kept key verifies fetches it again (fal rotated its keys), at
most once a minute. A timestamp more than five minutes off is refused (a replay). The TLS
context for those fetches (reading the CA bundle: ~20 ms of CPU) is built once, in a thread,
not on the event loop in the middle of the delivery that needed the keys.

The body: ``request_id``, ``status`` (``OK`` or ``ERROR``), ``payload`` (what the result GET
answers: the output, or the app's error body) and ``error`` (``Invalid status code: N``).
It is read with the poll's own rules (providers/fal_parse.py). An OK without a payload
(``payload_error``: fal could not serialise it) or with one that is not a result gives no
state: the request ended, and a poll reads it.

A verified delivery proves fal sent it, not that it is about one of our requests: anyone's
fal request can name our URL. Match it to a job by ``request_id``.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import re
import ssl
import time
from collections.abc import Callable, Mapping

import httpx
import orjson
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from gateway.errors import InvalidRequest, ProviderUnavailable, WebhookRejected
from providers.base import ProviderState, WebhookDelivery
from providers.fal_parse import failed, succeeded
from providers.webhook_auth import (
    DEFAULT_TOLERANCE,
    RefreshingKeys,
    check_timestamp,
    lower_headers,
)

__all__ = ["DEFAULT_JWKS_URL", "FalWebhooks", "read_jwks"]

DEFAULT_JWKS_URL = "https://rest.fal.ai/.well-known/jwks.json"
JWKS_TIMEOUT = 10.0
_PREFIX = "x-fal-webhook-"
_STATUS_CODE = re.compile(r"status code:?\s*(\d{3})\b", re.IGNORECASE)

Keys = tuple[Ed25519PublicKey, ...]


class FalWebhooks:
    """Verifies and reads fal's webhook deliveries; see the module docstring."""

    def __init__(
        self,
        jwks_url: str = DEFAULT_JWKS_URL,
        *,
        tolerance: float = DEFAULT_TOLERANCE,
        refetch_floor: float = 60.0,
        clock: Callable[[], float] = time.time,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.jwks_url = jwks_url
        self._tolerance = tolerance
        self._clock = clock
        self._transport = transport
        self._tls: ssl.SSLContext | None = None
        self.keys = RefreshingKeys(self._load, what="fal webhook keys (JWKS)", floor=refetch_floor)

    async def parse(
        self, headers: Mapping[str, str], body: bytes, query: Mapping[str, str]
    ) -> WebhookDelivery:
        request_id, stamp = await self.verify(headers, body)
        try:
            data = orjson.loads(body)
        except orjson.JSONDecodeError:
            data = None
        if not isinstance(data, dict) or data.get("request_id") != request_id:
            raise InvalidRequest("The fal webhook's body is not a delivery for its request id.")
        status, payload = data.get("status"), data.get("payload")
        if status == "OK":
            try:
                state = succeeded(payload) if payload is not None else None
            except ValueError:
                state = None  # the poll's result read decides what it is
        elif status == "ERROR":
            state = _failure(data.get("error"), payload)
        else:
            raise InvalidRequest(f"The fal webhook's status {status!r} is not OK or ERROR.")
        return WebhookDelivery(
            request_id, state, f"{request_id}@{stamp}", "completed", query.get("job")
        )

    async def verify(self, headers: Mapping[str, str], body: bytes) -> tuple[str, int]:
        """The request id and timestamp of a delivery fal signed, or ``WebhookRejected``."""
        found = lower_headers(headers)
        request_id, user_id, signature = (
            found.get(_PREFIX + name) for name in ("request-id", "user-id", "signature")
        )
        if not request_id or user_id is None or not signature:
            raise WebhookRejected("The fal webhook lacks its X-Fal-Webhook-* signature headers.")
        header = "X-Fal-Webhook-Timestamp"
        stamp = check_timestamp(
            found.get(_PREFIX + "timestamp"), header, tolerance=self._tolerance, now=self._clock()
        )
        try:
            signed = bytes.fromhex(signature)
        except ValueError:
            raise WebhookRejected("The fal webhook's signature is not hexadecimal.") from None
        message = "\n".join(
            (request_id, user_id, found[_PREFIX + "timestamp"], hashlib.sha256(body).hexdigest())
        ).encode()
        if _verifies(await self.keys.get(), signed, message):
            return request_id, stamp
        fresh = await self.keys.reload()  # fal may have rotated its keys
        if fresh is not None and _verifies(fresh, signed, message):
            return request_id, stamp
        raise WebhookRejected("The fal webhook's signature does not verify with fal's keys.")

    async def _load(self) -> Keys:
        if self._tls is None and self._transport is None:
            self._tls = await asyncio.to_thread(httpx.create_ssl_context)
        verify: ssl.SSLContext | bool = True if self._tls is None else self._tls
        try:
            async with httpx.AsyncClient(
                transport=self._transport, verify=verify, timeout=JWKS_TIMEOUT
            ) as http:
                response = await http.get(self.jwks_url)
        except httpx.HTTPError as exc:
            raise ProviderUnavailable(f"{type(exc).__name__} from the JWKS URL") from exc
        if response.status_code != 200:
            raise ProviderUnavailable(f"the JWKS URL answered HTTP {response.status_code}")
        try:
            return read_jwks(response.json())
        except ValueError as exc:
            raise ProviderUnavailable(f"the JWKS is not usable: {exc}") from exc


def read_jwks(jwks: object) -> Keys:
    """The Ed25519 keys of a JWKS (others are skipped); ``ValueError`` when it has none."""
    entries = jwks.get("keys") if isinstance(jwks, dict) else None
    keys: list[Ed25519PublicKey] = []
    for entry in entries if isinstance(entries, list) else []:
        if not isinstance(entry, dict) or (entry.get("kty"), entry.get("crv")) != (
            "OKP",
            "Ed25519",
        ):
            continue
        x = entry.get("x")
        try:
            raw = base64.urlsafe_b64decode(str(x) + "=" * (-len(str(x)) % 4))
            keys.append(Ed25519PublicKey.from_public_bytes(raw))
        except ValueError:
            continue
    if not keys:
        raise ValueError("no Ed25519 key in it")
    return tuple(keys)


def _verifies(keys: Keys, signature: bytes, message: bytes) -> bool:
    for key in keys:
        try:
            key.verify(signature, message)
        except InvalidSignature:
            continue
        return True
    return False


def _failure(error: object, payload: object) -> ProviderState:
    """An ERROR delivery, classified as the poll classifies it (its type, else the app's
    replayed status: ``Invalid status code: 422`` with the error body as payload)."""
    body = payload if isinstance(payload, dict) else {}
    found = _STATUS_CODE.search(error) if isinstance(error, str) else None
    result = httpx.Response(int(found[1]), json=payload) if found else None
    detail = body.get("detail")
    error_type = body.get("error_type")
    message = detail if isinstance(detail, str) and detail else None
    if message is None and isinstance(error, str):
        message = error
    return failed(message, error_type if isinstance(error_type, str) else None, result)
