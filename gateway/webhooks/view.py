"""A job's webhook as its owner sees it in ``GET /v1/jobs/{id}``: target and deliveries."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from gateway.jobs import Job
from gateway.store.base import JobStore, WebhookDelivery
from gateway.webhooks.due import hook_of
from gateway.webhooks.validate import DEFAULT_EVENTS


def _seconds(value: float | None) -> int | None:
    return None if value is None else int(value)


def webhook_view(job: Job, deliveries: Sequence[WebhookDelivery]) -> dict[str, Any] | None:
    """``{"url", "events", "deliveries": [...]}`` for a job created with a webhook, else None.

    Each delivery: ``id`` (its ``webhook-id``), ``event`` (``started``, ``progress:40``,
    ``completed``), ``status`` (``pending``, ``delivered``, ``failed``), ``attempts``,
    ``last_status_code``, ``last_error``, ``delivered_at`` and, while pending,
    ``next_attempt_at`` (unix seconds).
    """
    hook = hook_of(job)
    if hook is None:
        return None
    return {
        "url": hook["url"],
        "events": list(hook.get("events") or DEFAULT_EVENTS),
        "deliveries": [
            {
                "id": d.id,
                "event": d.event_key,
                "status": d.status,
                "attempts": d.attempts,
                "last_status_code": d.last_status_code,
                "last_error": d.last_error,
                "delivered_at": _seconds(d.delivered_at),
                "next_attempt_at": _seconds(d.next_attempt_at) if d.status == "pending" else None,
            }
            for d in deliveries
        ],
    }


async def job_webhook(store: JobStore, job: Job) -> dict[str, Any] | None:
    """``webhook_view`` of ``job``, reading its deliveries only when it has a webhook."""
    if hook_of(job) is None:
        return None
    return webhook_view(job, await store.deliveries_for_job(job.id))
