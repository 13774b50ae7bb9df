"""Outgoing webhooks: a job created with ``webhook_url`` is POSTed to on its events.

- ``validate_webhook`` checks a request's ``webhook_url`` / ``webhook_events`` (with the SSRF
  guard, ``gateway.netguard``) and returns what the job keeps as ``meta["webhook"]``.
- ``WebhookDispatcher`` stores the deliveries each job owes (an outbox in the database) and
  sends them, signed per Standard Webhooks with the owner's secret, retrying with backoff.
- ``webhook_view`` / ``job_webhook`` show a job's webhook and its deliveries on the job.
"""

from __future__ import annotations

from gateway.webhooks.dispatcher import WebhookDispatcher
from gateway.webhooks.sender import Backoff, Outcome, Sender
from gateway.webhooks.validate import DEFAULT_EVENTS, EVENTS, validate_webhook
from gateway.webhooks.view import job_webhook, webhook_view

__all__ = [
    "DEFAULT_EVENTS",
    "EVENTS",
    "Backoff",
    "Outcome",
    "Sender",
    "WebhookDispatcher",
    "job_webhook",
    "validate_webhook",
    "webhook_view",
]
