"""Replicate's webhooks, received: Standard Webhooks signatures under the account's secret,
and the prediction object read into the state a poll would have produced.

A delivery carries ``webhook-id`` (kept by the retries of one event), ``webhook-timestamp``
(unix seconds) and ``webhook-signature``: space-separated ``v1,<base64>`` signatures, each
an HMAC-SHA256 of ``{id}.{timestamp}.{raw body}`` keyed with the bytes of the secret
``whsec_<base64>``; one that matches is enough (several appear while a secret rotates). A
timestamp more than five minutes off is refused (a replay).

The secret is ``BACKSERV_REPLICATE_WEBHOOK_SECRET`` when set, else read from
``GET /v1/webhooks/default/secret`` with the API token on first use and kept for a day; a
signature it does not verify reads it again (the account's secret changed), at most once a
minute. The body is the prediction as ``GET /v1/predictions/{id}`` shows it, read with the
poll's rules (providers/replicate_parse.py); the callback URL's ``kind`` query parameter
(set by the submit) stands in for the job's kind the poll reads from its reference.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

import orjson
from replicate.prediction import Prediction

from gateway.errors import ConfigError, InvalidRequest, WebhookRejected
from providers.base import ProviderState, ProviderTransientError, StateKind, WebhookDelivery
from providers.replicate_parse import aborted, prediction_state
from providers.webhook_auth import (
    DEFAULT_TOLERANCE,
    RefreshingKeys,
    check_timestamp,
    lower_headers,
)

__all__ = ["ReplicateWebhooks", "decode_secret"]

SECRET_TTL = 24 * 3600.0


def decode_secret(secret: str) -> bytes:
    """The key bytes of a ``whsec_<base64>`` secret; ``ValueError`` when it is not one."""
    encoded = secret.strip().removeprefix("whsec_")
    try:
        key = base64.b64decode(encoded, validate=True)
    except binascii.Error:
        raise ValueError("a Replicate webhook secret is whsec_ and base64") from None
    if not key:
        raise ValueError("a Replicate webhook secret is whsec_ and base64")
    return key


class ReplicateWebhooks:
    """Verifies and reads Replicate's deliveries; see the module docstring.

    ``secret``: the configured secret, or None to ``fetch_secret()`` it (a ``GatewayError``
    when that fails).
    """

    def __init__(
        self,
        *,
        secret: str | None,
        fetch_secret: Callable[[], Awaitable[str]],
        tolerance: float = DEFAULT_TOLERANCE,
        refetch_floor: float = 60.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._static: bytes | None = None
        if secret:
            try:
                self._static = decode_secret(secret)
            except ValueError as exc:
                raise ConfigError(f"BACKSERV_REPLICATE_WEBHOOK_SECRET: {exc}.") from None
        self._fetch_secret = fetch_secret
        self._tolerance = tolerance
        self._clock = clock
        self.keys = RefreshingKeys(
            self._load, what="Replicate webhook secret", ttl=SECRET_TTL, floor=refetch_floor
        )

    async def parse(
        self, headers: Mapping[str, str], body: bytes, query: Mapping[str, str]
    ) -> WebhookDelivery:
        message_id = await self.verify(headers, body)
        try:
            data = orjson.loads(body)
        except orjson.JSONDecodeError:
            data = None
        prediction_id = data.get("id") if isinstance(data, dict) else None
        if not isinstance(data, dict) or not isinstance(prediction_id, str) or not prediction_id:
            raise InvalidRequest("The Replicate webhook's body is not a prediction.")
        state = _state(data, query.get("kind") or "")
        event = "completed" if state is not None and state.terminal else str(data.get("status"))
        return WebhookDelivery(prediction_id, state, message_id, event, query.get("job"))

    async def verify(self, headers: Mapping[str, str], body: bytes) -> str:
        """The ``webhook-id`` of a delivery signed with the secret, or ``WebhookRejected``."""
        found = lower_headers(headers)
        message_id, signatures = found.get("webhook-id"), found.get("webhook-signature")
        if not message_id or not signatures:
            raise WebhookRejected("The Replicate webhook lacks its webhook-* signature headers.")
        stamp = found.get("webhook-timestamp")
        check_timestamp(stamp, "webhook-timestamp", tolerance=self._tolerance, now=self._clock())
        signed = f"{message_id}.{stamp}.".encode() + body
        candidates = [
            value.encode()
            for version, _, value in (s.partition(",") for s in signatures.split())
            if version == "v1"
        ]
        if self._static is not None:
            if _matches(self._static, signed, candidates):
                return message_id
        else:
            if _matches(await self.keys.get(), signed, candidates):
                return message_id
            fresh = await self.keys.reload()  # the account's secret may have changed
            if fresh is not None and _matches(fresh, signed, candidates):
                return message_id
        raise WebhookRejected("The Replicate webhook's signature does not verify.")

    async def _load(self) -> bytes:
        secret = await self._fetch_secret()
        try:
            return decode_secret(secret)
        except ValueError as exc:
            raise InvalidRequest(f"Replicate's secret is not usable: {exc}") from None


def _matches(key: bytes, signed: bytes, candidates: list[bytes]) -> bool:
    expected = base64.b64encode(hmac.new(key, signed, hashlib.sha256).digest())
    return any(hmac.compare_digest(expected, candidate) for candidate in candidates)


def _state(data: dict[str, Any], kind: str) -> ProviderState | None:
    """The poll's reading of the prediction; None for a status it does not know (a poll
    decides what it is)."""
    try:
        prediction = Prediction(**data)
    except ValueError as exc:
        if aborted(exc):
            return ProviderState(StateKind.CANCELLED)
        raise InvalidRequest("The Replicate webhook's prediction cannot be read.") from None
    try:
        return prediction_state(prediction, kind)
    except ProviderTransientError:  # a status the poll would not know either
        return None
