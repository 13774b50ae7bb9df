"""Standard Webhooks signatures (the scheme Replicate and OpenAI use).

Headers ``webhook-id``, ``webhook-timestamp`` and ``webhook-signature: v1,<base64 HMAC-SHA256>``
over ``"{id}.{timestamp}.{body}"``, keyed with the bytes behind a ``whsec_<base64>`` secret.
Receivers should reject timestamps more than five minutes away from their clock.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets

from gateway.digits import parse_digits

PREFIX = "whsec_"
TOLERANCE_SECONDS = 300


def new_secret() -> str:
    return PREFIX + base64.b64encode(secrets.token_bytes(32)).decode()


def _key(secret: str) -> bytes:
    if not secret.startswith(PREFIX):
        raise ValueError("a webhook secret starts with 'whsec_'")
    return base64.b64decode(secret[len(PREFIX) :])


def sign(secret: str, message_id: str, timestamp: int, body: bytes) -> str:
    payload = f"{message_id}.{timestamp}.".encode() + body
    digest = hmac.new(_key(secret), payload, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode()


def headers(secret: str, message_id: str, timestamp: int, body: bytes) -> dict[str, str]:
    return {
        "webhook-id": message_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": sign(secret, message_id, timestamp, body),
        "content-type": "application/json",
    }


def verify(
    secret: str, message_id: str, timestamp: str, signature_header: str, body: bytes, now: float
) -> bool:
    """Check a delivery the way a receiver should (used by tests and the README example)."""
    sent_at = parse_digits(timestamp)
    if sent_at is None or abs(now - sent_at) > TOLERANCE_SECONDS:
        return False
    expected = sign(secret, message_id, sent_at, body).split(",", 1)[1]
    for part in signature_header.split():
        version, _, value = part.partition(",")
        if version == "v1" and hmac.compare_digest(value, expected):
            return True
    return False
