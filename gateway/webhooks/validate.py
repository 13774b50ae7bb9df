"""Checking a job's ``webhook_url`` / ``webhook_events`` when the job is created."""

from __future__ import annotations

from typing import Any

from gateway import netguard
from gateway.errors import InvalidRequest
from gateway.netguard import AllowList

#: the events a webhook may subscribe to, in the order a job goes through them
EVENTS = ("started", "progress", "completed")
DEFAULT_EVENTS = ("completed",)
MAX_URL_LENGTH = 2048


def _events(raw: Any) -> list[str]:
    if raw is None:
        return list(DEFAULT_EVENTS)
    if not isinstance(raw, list) or not all(isinstance(e, str) for e in raw):
        raise InvalidRequest(
            f"Invalid 'webhook_events': must be a list of event names ({', '.join(EVENTS)}).",
            param="webhook_events",
            code="invalid_type",
        )
    unknown = [e for e in raw if e not in EVENTS]
    if unknown:
        raise InvalidRequest(
            f"Invalid 'webhook_events': unknown event '{unknown[0]}'; the events are "
            f"{', '.join(EVENTS)}.",
            param="webhook_events",
            code="invalid_value",
        )
    if not raw:
        raise InvalidRequest(
            "Invalid 'webhook_events': name at least one event, or leave it out for ['completed'].",
            param="webhook_events",
            code="invalid_value",
        )
    return [e for e in EVENTS if e in raw]


async def validate_webhook(url: Any, events: Any, allow: AllowList) -> dict[str, Any] | None:
    """What to store as ``job.meta["webhook"]``: ``{"url": ..., "events": [...]}``.

    ``url`` and ``events`` are the request's raw ``webhook_url`` and ``webhook_events`` (None
    when absent). Returns None when neither is given. Raises ``InvalidRequest`` (400, ``param``
    ``webhook_url`` or ``webhook_events``) for a malformed URL, a scheme other than http(s),
    a URL over 2048 characters, a host that does not resolve, a host that is or resolves to a
    non-public address (unless ``allow``, ``BACKSERV_WEBHOOK_ALLOW``, lists it), or unknown events.
    Events default to ``["completed"]``. Resolves the host: call it before storing the job.
    """
    if url is None:
        if events is not None:
            raise InvalidRequest(
                "'webhook_events' needs a 'webhook_url' to send the events to.",
                param="webhook_url",
                code="missing_parameter",
            )
        return None
    if not isinstance(url, str):
        raise InvalidRequest(
            "Invalid 'webhook_url': must be a string (an http or https URL).",
            param="webhook_url",
            code="invalid_type",
        )
    if len(url) > MAX_URL_LENGTH:
        raise InvalidRequest(
            f"Invalid 'webhook_url': at most {MAX_URL_LENGTH} characters (got {len(url)}).",
            param="webhook_url",
            code="invalid_value",
        )
    chosen = _events(events)
    await netguard.check_url(url.strip(), allow, param="webhook_url")
    return {"url": url.strip(), "events": chosen}
