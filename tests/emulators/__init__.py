"""Local emulators of the fal queue API and the Replicate predictions API, for tests.

Both deliver signed webhooks when a submit asks for them (fal ``?fal_webhook=``, Replicate
``webhook`` + ``webhook_events_filter``), only to loopback URLs; a test queues faults for
them on the ``"webhook"`` script route (webhook_faults.py) and reads what was sent with
``state.webhooks.deliveries()`` or ``GET /_emulator/webhooks``.
"""

from __future__ import annotations

from tests.emulators.behaviour import Behaviour, BehaviourError, Scripted
from tests.emulators.control import EmulatorState
from tests.emulators.fal import FalEmulator, create_fal_app
from tests.emulators.replicate import ReplicateEmulator, create_replicate_app
from tests.emulators.requestlog import LoggedRequest, RequestLog
from tests.emulators.server import serve
from tests.emulators.webhook_faults import WebhookFault
from tests.emulators.webhook_types import DeliveryAttempt, WebhookTargetError

__all__ = [
    "Behaviour",
    "BehaviourError",
    "DeliveryAttempt",
    "EmulatorState",
    "FalEmulator",
    "LoggedRequest",
    "ReplicateEmulator",
    "RequestLog",
    "Scripted",
    "WebhookFault",
    "WebhookTargetError",
    "create_fal_app",
    "create_replicate_app",
    "serve",
]
