"""Which webhook deliveries a job owes, given its current state, and what they carry.

A delivery is owed once per job and ``event_key``; the store's unique (job, event_key)
index makes creating one idempotent, however many times (and on however many replicas) a
change of the job is seen:

- ``started``: the job was claimed at least once (``started_at`` is set);
- ``progress:<n0>``: the job is PROCESSING at ``n0`` to ``n9`` percent: at most one per
  10-point bucket, and only the bucket the job is in when its change is read;
- ``completed``: the job is COMPLETED, FAILED or CANCELLED (type ``job.completed``,
  ``job.failed`` or ``job.cancelled``).

A job made through OpenAI's ``/v1/videos`` has a webhook in OpenAI's own words (its hook's
``format`` is ``"openai"``): only the terminal event, typed ``video.completed`` (COMPLETED)
or ``video.failed`` (FAILED, CANCELLED), with the payload an OpenAI event object
``{"id": "evt_…", "object": "event", "created_at", "type", "data": {"id": <video id>}}``,
so ``openai``'s ``client.webhooks.unwrap(...)`` verifies and parses it unchanged.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from typing import Any

import orjson

from gateway.jobs import Job, Status
from gateway.store.base import WebhookDelivery
from gateway.webhooks.validate import DEFAULT_EVENTS

COMPLETED_KEY = "completed"
OPENAI_FORMAT = "openai"
_OPENAI_TYPES = {
    Status.COMPLETED: "video.completed",
    Status.FAILED: "video.failed",
    Status.CANCELLED: "video.failed",
}
_TERMINAL_TYPES = {
    Status.COMPLETED: "job.completed",
    Status.FAILED: "job.failed",
    Status.CANCELLED: "job.cancelled",
}


@dataclass(frozen=True)
class Due:
    key: str  # unique per job: "started", "progress:40", "completed"
    type: str  # the payload's "type": "job.started", "job.progress", "job.completed", ...


def hook_of(job: Job) -> dict[str, Any] | None:
    hook = job.meta.get("webhook")
    return hook if isinstance(hook, dict) and isinstance(hook.get("url"), str) else None


def due_events(job: Job) -> list[Due]:
    """The deliveries ``job`` owes in its current state (some may exist already)."""
    hook = hook_of(job)
    if hook is None:
        return []
    if hook.get("format") == OPENAI_FORMAT:
        if not job.status.terminal:
            return []
        return [Due(COMPLETED_KEY, _OPENAI_TYPES[job.status])]
    wanted = set(hook.get("events") or DEFAULT_EVENTS)
    due: list[Due] = []
    if "started" in wanted and job.started_at is not None:
        due.append(Due("started", "job.started"))
    if "progress" in wanted and job.status is Status.PROCESSING:
        bucket = job.progress // 10 * 10
        if bucket >= 10:
            due.append(Due(f"progress:{bucket}", "job.progress"))
    if "completed" in wanted and job.status.terminal:
        due.append(Due(COMPLETED_KEY, _TERMINAL_TYPES[job.status]))
    return due


def new_message_id() -> str:
    """A delivery's id, sent as ``webhook-id`` (the same on every retry of it)."""
    return "msg_" + secrets.token_hex(12)


def new_delivery(job: Job, due: Due, data: dict[str, Any], now: float) -> WebhookDelivery:
    """A pending delivery of ``due`` for ``job``; ``data`` is the job as the API renders it."""
    hook = hook_of(job)
    if hook is None:
        raise ValueError(f"job {job.id} has no webhook")
    payload: dict[str, Any]
    if hook.get("format") == OPENAI_FORMAT:
        payload = {
            "id": "evt_" + secrets.token_hex(12),
            "object": "event",
            "created_at": int(now),
            "type": due.type,
            "data": {"id": job.id},
        }
    else:
        payload = {"type": due.type, "timestamp": int(now), "data": data}
    return WebhookDelivery(
        id=new_message_id(),
        job_id=job.id,
        owner=job.owner,
        event_key=due.key,
        url=hook["url"],
        payload=orjson.dumps(payload).decode(),
        created_at=now,
        next_attempt_at=now,
    )
