"""Replicate's webhooks: the prediction POSTed on the events a create asked for, signed with
Standard Webhooks.

A create's ``webhook`` (a loopback URL here) gets the prediction object, as
``GET /v1/predictions/{id}`` shows it then, on the events of ``webhook_events_filter``
(all four when it is absent; Replicate's docs disagree on that default):

- ``start`` when the prediction starts running (never, if it ends while still queued);
- ``logs`` as its progress lines grow, at most one every ``LOGS_INTERVAL`` seconds;
- ``output`` when its output appears (a succeeded prediction, just before its end);
- ``completed`` when it ends: ``succeeded``, ``failed``, ``canceled`` or ``aborted``.

Only ``completed`` is retried when it fails, as Replicate does. Headers: ``webhook-id`` (one
per delivery, kept by its retries and duplicates), ``webhook-timestamp`` (unix seconds) and
``webhook-signature``: ``v1,`` and the base64 HMAC-SHA256, keyed with the bytes of the
account's secret ``whsec_<base64>``, of ``{id}.{timestamp}.{body}``. The secret is made when
the emulator is built; ``GET /v1/webhooks/default/secret`` answers ``{"key": "whsec_..."}``.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
from typing import TYPE_CHECKING, Any, cast

import orjson

from tests.emulators.webhook_types import PlannedEvent, WebhookFormat

if TYPE_CHECKING:
    from tests.emulators.replicate_state import ReplicateEmulator, ReplicatePrediction

EVENTS = ("start", "output", "logs", "completed")
LOGS_INTERVAL = 0.5
SECRET_PATH = "/v1/webhooks/default/secret"


def parse_events_filter(value: object) -> frozenset[str]:
    """``webhook_events_filter``: a list of ``start``, ``output``, ``logs``, ``completed``."""
    if value is None:
        return frozenset(EVENTS)
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ValueError("webhook_events_filter must be a list of event names")
    unknown = sorted(set(value) - set(EVENTS))
    if unknown:
        raise ValueError(f"unknown webhook events {unknown}: expected any of {list(EVENTS)}")
    return frozenset(value)


class StandardWebhooksSigner:
    """A ``whsec_`` secret and the Standard Webhooks headers it signs."""

    def __init__(self) -> None:
        self._key = secrets.token_bytes(32)
        self.secret = "whsec_" + base64.b64encode(self._key).decode()

    def headers(
        self, message_id: str, body: bytes, timestamp: int, *, forged: bool = False
    ) -> dict[str, str]:
        key = secrets.token_bytes(32) if forged else self._key
        signed = f"{message_id}.{timestamp}.".encode() + body
        signature = base64.b64encode(hmac.new(key, signed, hashlib.sha256).digest()).decode()
        return {
            "webhook-id": message_id,
            "webhook-timestamp": str(timestamp),
            "webhook-signature": f"v1,{signature}",
        }


class ReplicateWebhooks(WebhookFormat):
    """A prediction's events, read off its timeline."""

    def __init__(self, state: ReplicateEmulator, signer: StandardWebhooksSigner) -> None:
        self._state = state
        self.signer = signer

    def plan(self, job: Any) -> list[PlannedEvent]:
        prediction = cast("ReplicatePrediction", job)
        timeline = prediction.timeline
        end = timeline.ended_at()
        events: list[PlannedEvent] = []
        if end >= timeline.started:
            events.append(PlannedEvent(timeline.started, "start", "start"))
            steps = self._state.behaviour.progress_steps
            span = timeline.finished - timeline.started
            last = timeline.started
            for step in range(1, steps):
                at = timeline.started + span * step / steps
                if at >= end:
                    break
                if at - last >= LOGS_INTERVAL:
                    events.append(PlannedEvent(at, "logs", f"logs:{step}"))
                    last = at
            if timeline.phase(end) == "succeeded":
                events.append(PlannedEvent(end, "output", "output"))
        events.append(PlannedEvent(end, "completed", "completed", terminal=True))
        return events

    def render(self, job: Any, event: PlannedEvent) -> bytes:
        prediction = cast("ReplicatePrediction", job)
        body = self._state.to_json(prediction, at=event.at)
        if not event.terminal:  # not over yet, even when the run took no time at all
            body.update(status="processing", completed_at=None, metrics={}, error=None)
            if event.name != "output":
                body["output"] = None
        return orjson.dumps(body)

    def sign(
        self, job: Any, message_id: str, body: bytes, timestamp: int, *, forged: bool
    ) -> dict[str, str]:
        return self.signer.headers(message_id, body, timestamp, forged=forged)

    def retried(self, event: PlannedEvent) -> bool:
        return event.terminal
