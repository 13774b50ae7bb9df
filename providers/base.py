"""The provider seam: the only thing that talks to an inference backend.

The interface is split in three so a job survives a gateway restart without being paid for
twice: ``submit`` returns the provider's request reference, which the scheduler persists
before anything else happens; ``poll`` reads the request's state; ``cancel`` stops it.
Providers translate vendor errors at the edge into ``gateway.errors.ProviderError``
subclasses; nothing above them sees a vendor exception.
"""

from __future__ import annotations

import asyncio
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from gateway.errors import (
    ProviderError,
    ProviderInputError,
    ProviderLostRequest,
    ProviderSubmitUncertain,
    ProviderTransientError,
    ProviderUnavailable,
)

__all__ = [
    "Output",
    "Provider",
    "ProviderError",
    "ProviderInputError",
    "ProviderLostRequest",
    "ProviderRef",
    "ProviderState",
    "ProviderSubmitUncertain",
    "ProviderTransientError",
    "ProviderUnavailable",
    "RouteSpec",
    "StateKind",
]


@dataclass(frozen=True)
class RouteSpec:
    """One way to run a model: which provider, which target there, and how to map input."""

    provider: str
    target: str
    options: dict[str, Any] = field(default_factory=dict)
    input_map: dict[str, str] = field(default_factory=dict)
    constants: dict[str, Any] = field(default_factory=dict)

    @property
    def name(self) -> str:
        return f"{self.provider}:{self.target}"

    def to_dict(self) -> dict[str, Any]:
        return {
            "provider": self.provider,
            "target": self.target,
            "options": dict(self.options),
            "input_map": dict(self.input_map),
            "constants": dict(self.constants),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RouteSpec:
        return cls(
            str(data["provider"]),
            str(data["target"]),
            dict(data.get("options") or {}),
            dict(data.get("input_map") or {}),
            dict(data.get("constants") or {}),
        )


@dataclass(frozen=True)
class ProviderRef:
    """What the provider gave back on submit; persisted so polling can resume after a crash."""

    request_id: str
    data: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Output:
    """One produced file: either its bytes, or a URL the gateway copies into its storage."""

    content_type: str
    data: bytes | None = None
    url: str | None = None
    width: int | None = None
    height: int | None = None
    extra: dict[str, Any] = field(default_factory=dict)


class StateKind(StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"


@dataclass(frozen=True)
class ProviderState:
    kind: StateKind
    progress: int | None = None
    queue_position: int | None = None
    outputs: tuple[Output, ...] = ()
    seed: int | None = None
    error: ProviderError | None = None

    @property
    def terminal(self) -> bool:
        return self.kind in (StateKind.SUCCEEDED, StateKind.FAILED, StateKind.CANCELLED)


class Provider(ABC):
    """A backend that runs jobs. Subclasses implement ``submit``, ``poll`` and ``cancel``."""

    #: the name routes use in the catalog (``provider = "..."``)
    name: str = ""
    #: seconds between polls when the provider offers nothing better
    poll_interval: float = 1.0
    #: whether a request the provider forgot (ProviderLostRequest) may simply be submitted
    #: again: true where a run costs nothing (sandbox, local); a paid provider fails the job
    free_resubmit: bool = False

    def availability(self, route: RouteSpec) -> tuple[bool, str | None]:
        """Whether ``route`` can run now, and if not, why (e.g. missing credentials)."""
        return True, None

    @abstractmethod
    async def submit(
        self, route: RouteSpec, job_input: dict[str, Any], *, job_id: str, kind: str
    ) -> ProviderRef:
        """Start the work; return the provider's reference. Must not block until done."""

    @abstractmethod
    async def poll(self, route: RouteSpec, ref: ProviderRef) -> ProviderState:
        """Read the current state of a submitted request."""

    @abstractmethod
    async def cancel(self, route: RouteSpec, ref: ProviderRef) -> None:
        """Ask the provider to stop the request; best effort."""

    async def wait(self, route: RouteSpec, ref: ProviderRef, timeout: float) -> ProviderState:
        """Return the state once it changes or after at most ``timeout`` seconds.

        The default sleeps and polls; providers that can be told (an in-process future, a
        webhook) override it to answer sooner.
        """
        await asyncio.sleep(min(timeout, self.poll_interval))
        return await self.poll(route, ref)

    async def aclose(self) -> None:
        """Release clients and connections."""
