"""A scriptable fake Provider for runner and scheduler tests.

Each ``submit`` takes the next :class:`Script` from the provider's list (or ``default()``
once the list is used up). A script either makes ``submit`` raise, or lists what successive
``poll`` calls of that request return (a state, or an error to raise); the last entry repeats.
A script with a ``gate`` reports RUNNING until the gate is set. Every call is recorded, and
the fake counts how many of its requests are open at once (``max_active``).
"""

from __future__ import annotations

import asyncio
import io
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from PIL import Image

from providers.base import (
    Output,
    Provider,
    ProviderError,
    ProviderLostRequest,
    ProviderRef,
    ProviderState,
    ProviderTransientError,
    RouteSpec,
    StateKind,
)


def png_bytes(
    width: int = 8, height: int = 6, colour: tuple[int, int, int] = (10, 200, 30)
) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (width, height), colour).save(out, format="PNG")
    return out.getvalue()


PNG = png_bytes()

#: a poll's answer, or what it raises (a provider's error, or one it failed to translate)
Poll = ProviderState | ProviderError | Exception


@dataclass
class Script:
    """What one submitted request does."""

    submit_error: BaseException | None = None
    polls: list[Poll] = field(default_factory=list)
    gate: asyncio.Event | None = None


def running(progress: int = 10, queue_position: int | None = None) -> ProviderState:
    return ProviderState(StateKind.RUNNING, progress=progress, queue_position=queue_position)


def output(data: bytes = PNG, width: int = 8, height: int = 6) -> Output:
    return Output(content_type="image/png", data=data, width=width, height=height)


def succeeded(outputs: int = 1, seed: int | None = None) -> ProviderState:
    return ProviderState(
        StateKind.SUCCEEDED,
        progress=100,
        outputs=tuple(output() for _ in range(outputs)),
        seed=seed,
    )


def succeed(after: int = 0, outputs: int = 1, gate: asyncio.Event | None = None) -> Script:
    """Succeed on the poll after ``after`` RUNNING polls."""
    polls: list[Poll] = [running(10 * (i + 1)) for i in range(after)]
    polls.append(succeeded(outputs))
    return Script(polls=polls, gate=gate)


def submit_fails(error: BaseException) -> Script:
    return Script(submit_error=error)


def fails(error: ProviderError) -> Script:
    """The request is accepted, then reported FAILED with ``error``."""
    return Script(polls=[ProviderState(StateKind.FAILED, error=error)])


def poll_raises(error: Exception, then: list[Poll] | None = None) -> Script:
    """The first poll raises ``error``; later polls follow ``then``."""
    return Script(polls=[error, *(then or [])])


@dataclass
class Submitted:
    route: RouteSpec
    job_input: dict[str, Any]
    job_id: str
    kind: str
    request_id: str | None


@dataclass
class _Request:
    script: Script
    polls: int = 0


class FakeProvider(Provider):
    poll_interval = 0.001

    def __init__(
        self,
        name: str = "fake",
        scripts: list[Script] | None = None,
        *,
        default: Callable[[], Script] = succeed,
    ) -> None:
        self.name = name
        self.free_resubmit = True  # like the sandbox; tests of paid providers turn it off
        self.scripts = list(scripts or [])
        self.default = default
        self.available = True
        self.unavailable_reason = "the fake is switched off"
        self.submits: list[Submitted] = []
        self.polled: list[str] = []
        self.cancels: list[str] = []
        self.requests: dict[str, _Request] = {}
        self.active: set[str] = set()
        self.max_active = 0
        #: awaited at every poll, before the script answers (tests inspect the store here)
        self.on_poll: Callable[[ProviderRef], Awaitable[None]] | None = None
        self._counter = 0

    # -- test helpers ----------------------------------------------------------------------

    def add_request(self, request_id: str, script: Script) -> None:
        """Make the fake know a request submitted before (by an earlier gateway process)."""
        self.requests[request_id] = _Request(script)
        self._open(request_id)

    def submitted_job_ids(self) -> list[str]:
        return [s.job_id for s in self.submits]

    def _open(self, request_id: str) -> None:
        self.active.add(request_id)
        self.max_active = max(self.max_active, len(self.active))

    # -- the seam ------------------------------------------------------------------------

    def availability(self, route: RouteSpec) -> tuple[bool, str | None]:
        return (True, None) if self.available else (False, self.unavailable_reason)

    async def submit(
        self, route: RouteSpec, job_input: dict[str, Any], *, job_id: str, kind: str
    ) -> ProviderRef:
        script = self.scripts.pop(0) if self.scripts else self.default()
        if script.submit_error is not None:
            self.submits.append(Submitted(route, dict(job_input), job_id, kind, None))
            raise script.submit_error
        self._counter += 1
        request_id = f"{self.name}-req-{self._counter}"
        self.submits.append(Submitted(route, dict(job_input), job_id, kind, request_id))
        self.requests[request_id] = _Request(script)
        self._open(request_id)
        return ProviderRef(request_id, {"route": route.name})

    async def poll(self, route: RouteSpec, ref: ProviderRef) -> ProviderState:
        self.polled.append(ref.request_id)
        if self.on_poll is not None:
            await self.on_poll(ref)
        request = self.requests.get(ref.request_id)
        if request is None:
            raise ProviderLostRequest(f"{self.name} does not know {ref.request_id}")
        script = request.script
        if script.gate is not None and not script.gate.is_set():
            return running(5)
        if not script.polls:
            self.active.discard(ref.request_id)
            return succeeded()
        step = script.polls[min(request.polls, len(script.polls) - 1)]
        request.polls += 1
        if isinstance(step, Exception):
            if not isinstance(step, ProviderTransientError):  # the runner keeps following those
                self.active.discard(ref.request_id)
            raise step
        if step.terminal:
            self.active.discard(ref.request_id)
        return step

    async def cancel(self, route: RouteSpec, ref: ProviderRef) -> None:
        self.cancels.append(ref.request_id)
        self.active.discard(ref.request_id)
