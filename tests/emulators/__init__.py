"""Local emulators of the fal queue API and the Replicate predictions API, for tests."""

from __future__ import annotations

from tests.emulators.behaviour import Behaviour, BehaviourError, Scripted
from tests.emulators.control import EmulatorState
from tests.emulators.fal import FalEmulator, create_fal_app
from tests.emulators.replicate import ReplicateEmulator, create_replicate_app
from tests.emulators.requestlog import LoggedRequest, RequestLog
from tests.emulators.server import serve

__all__ = [
    "Behaviour",
    "BehaviourError",
    "EmulatorState",
    "FalEmulator",
    "LoggedRequest",
    "ReplicateEmulator",
    "RequestLog",
    "Scripted",
    "create_fal_app",
    "create_replicate_app",
    "serve",
]
