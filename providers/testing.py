"""A scripted fake provider for testing your own code against the gateway.

Like httpx's ``MockTransport``, :class:`FakeProvider` takes the place of a real backend: each
submitted request plays the next :class:`Outcome` of its script, and every ``submit``,
``poll`` and ``cancel`` is recorded for assertions. It needs no network and no account, and
its outputs are bytes, so the gateway stores them as it stores any result. ::

    from gateway.app import create_app
    from gateway.catalog import parse_catalog
    from gateway.errors import ProviderTransientError
    from providers.testing import FakeProvider, fail, png, queued, running, succeed

    fake = FakeProvider(
        fail(ProviderTransientError("the GPU fell over")),  # the first submit fails ...
        succeed(png(64, 48), after=[queued(2), running(50)]),  # ... the retry completes
    )
    catalog = parse_catalog(
        {"models": [{"id": "my-model", "kind": "image",
                     "routes": [{"provider": "fake", "target": "my-model-v1"}]}]},
        ["fake"], source="tests",
    )
    app = create_app(settings, providers={"fake": fake}, catalog=catalog)
    # ... POST /v1/jobs {"model": "my-model", "input": {"prompt": "a cat"}}, wait for it ...
    assert [call.job_id for call in fake.submits] == [job_id, job_id]
    assert fake.submits[0].input["prompt"] == "a cat"

A script is the outcomes given to the constructor, in submit order (then ``default``, which
succeeds with one small PNG), or a function of the submit :class:`Call` that returns the
outcome, for jobs that run concurrently. Outcomes are made with :func:`succeed`,
:func:`fail` (the request is accepted, then reported failed) and :func:`refuse` (the submit
itself raises). The gateway's error class decides what the scheduler does:
``ProviderTransientError`` retries the route, ``ProviderUnavailable`` moves to the next
route, ``ProviderInputError`` fails the job at once, with no fallback.
"""

from __future__ import annotations

import asyncio
import itertools
import struct
import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from providers.base import (
    Output,
    Provider,
    ProviderError,
    ProviderLostRequest,
    ProviderRef,
    ProviderState,
    ProviderUnavailable,
    RouteSpec,
    StateKind,
)
from providers.mapping import map_input

__all__ = [
    "Call",
    "FakeProvider",
    "Outcome",
    "Step",
    "fail",
    "media_output",
    "png",
    "queued",
    "refuse",
    "running",
    "succeed",
]


@dataclass(frozen=True)
class Step:
    """One poll that finds the request not finished: queued (with a position) or running."""

    kind: StateKind
    progress: int | None = None
    queue_position: int | None = None

    def state(self) -> ProviderState:
        return ProviderState(self.kind, progress=self.progress, queue_position=self.queue_position)


def queued(position: int | None = None) -> Step:
    return Step(StateKind.QUEUED, queue_position=position)


def running(progress: int | None = None) -> Step:
    return Step(StateKind.RUNNING, progress=progress)


@dataclass(frozen=True, eq=False)
class Outcome:
    """What one submitted request does; made with :func:`succeed`, :func:`fail`, :func:`refuse`."""

    steps: tuple[Step, ...] = ()
    outputs: tuple[Output, ...] = ()
    seed: int | None = None
    error: ProviderError | None = None
    #: the error is raised by ``submit`` itself (the request never started)
    at_submit: bool = False
    #: while not set, the request stays at its last step (running), however often polled
    until: asyncio.Event | None = None


Steps = int | Sequence[Step]


def succeed(
    *outputs: Output | bytes,
    after: Steps = 0,
    seed: int | None = None,
    until: asyncio.Event | None = None,
) -> Outcome:
    """Complete with ``outputs`` (default: one 8x8 PNG) on the poll after ``after``: a number
    of running polls, or the steps to report first (``[queued(2), running(50)]``)."""
    files = tuple(media_output(o) for o in outputs) or (media_output(png(8, 8)),)
    return Outcome(steps=_steps(after), outputs=files, seed=seed, until=until)


def fail(
    error: ProviderError | type[ProviderError],
    *,
    after: Steps = 0,
    until: asyncio.Event | None = None,
) -> Outcome:
    """Accept the request, then report it failed with ``error`` (a class or an instance)."""
    return Outcome(steps=_steps(after), error=_error(error), until=until)


def refuse(error: ProviderError | type[ProviderError]) -> Outcome:
    """Make ``submit`` raise ``error``: the provider turned the request away."""
    return Outcome(error=_error(error), at_submit=True)


def _steps(after: Steps) -> tuple[Step, ...]:
    if isinstance(after, int):
        if after < 0:
            raise ValueError("'after' is a number of polls: 0 or more")
        return tuple(running(100 * (i + 1) // (after + 1)) for i in range(after))
    return tuple(after)


def _error(error: ProviderError | type[ProviderError]) -> ProviderError:
    return error() if isinstance(error, type) else error


# -- media ---------------------------------------------------------------------------------


def png(width: int = 8, height: int = 8, colour: tuple[int, int, int] = (40, 120, 220)) -> bytes:
    """A valid PNG of one colour, made without an imaging library."""
    if not (1 <= width <= 4096 and 1 <= height <= 4096):
        raise ValueError("png(): width and height are 1 to 4096 pixels")

    def chunk(tag: bytes, data: bytes) -> bytes:
        body = tag + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)  # 8-bit RGB
    rows = (b"\x00" + bytes(colour) * width) * height  # filter byte 0, then the pixels
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(rows))
        + chunk(b"IEND", b"")
    )


def media_output(value: Output | bytes) -> Output:
    """An :class:`Output` as given, or one for raw bytes of a PNG, JPEG, GIF, WebP or MP4
    (its type read from the bytes, and a PNG's or GIF's size from its header)."""
    if isinstance(value, Output):
        return value
    data = bytes(value)
    if data.startswith(b"\x89PNG\r\n\x1a\n") and len(data) >= 24:
        width, height = struct.unpack(">II", data[16:24])
        return Output("image/png", data=data, width=width, height=height)
    if data.startswith((b"GIF87a", b"GIF89a")) and len(data) >= 10:
        width, height = struct.unpack("<HH", data[6:10])
        return Output("image/gif", data=data, width=width, height=height)
    if data.startswith(b"\xff\xd8\xff"):
        return Output("image/jpeg", data=data)
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return Output("image/webp", data=data)
    if data[4:8] == b"ftyp":
        return Output("video/mp4", data=data)
    raise ValueError(
        "succeed(): these bytes are not a PNG, JPEG, GIF, WebP or MP4; "
        "pass an Output(content_type=..., data=...) instead"
    )


@dataclass(frozen=True)
class Call:
    """One call the gateway made: ``method`` is ``"submit"``, ``"poll"`` or ``"cancel"``."""

    method: str
    route: RouteSpec
    job_id: str | None
    request_id: str | None
    #: submit only: the job's canonical input, and what the route's mapping makes of it
    #: (what a hosted provider such as fal or Replicate would be sent)
    input: dict[str, Any] = field(default_factory=dict)
    mapped: dict[str, Any] = field(default_factory=dict)
    kind: str | None = None


@dataclass
class _Request:
    outcome: Outcome
    job_id: str
    polls: int = 0
    cancelled: bool = False


class FakeProvider(Provider):
    """A provider that plays a script; see the module docstring."""

    def __init__(
        self,
        *outcomes: Outcome,
        script: Callable[[Call], Outcome] | None = None,
        default: Outcome | None = None,
        name: str = "fake",
        available: bool = True,
        reason: str = "the fake provider is switched off",
        free_resubmit: bool = True,
        poll_interval: float = 0.01,
    ) -> None:
        if outcomes and script is not None:
            raise ValueError("give outcomes or a script function, not both")
        self.name = name
        self.outcomes = list(outcomes)
        self.script = script
        self.default = default or succeed()
        #: whether the routes can run now, and why not; may be changed while a test runs
        self.available = available
        self.reason = reason
        #: whether a request this provider forgot may be submitted again (see ``forget``)
        self.free_resubmit = free_resubmit
        self.poll_interval = poll_interval
        #: every call, in order
        self.calls: list[Call] = []
        self.closed = False
        self._requests: dict[str, _Request] = {}
        self._ids = itertools.count(1)

    # -- for assertions ----------------------------------------------------------------------

    @property
    def submits(self) -> list[Call]:
        return [c for c in self.calls if c.method == "submit"]

    @property
    def polls(self) -> list[Call]:
        return [c for c in self.calls if c.method == "poll"]

    @property
    def cancels(self) -> list[Call]:
        return [c for c in self.calls if c.method == "cancel"]

    def forget(self) -> None:
        """Forget every request, as a provider does after its results expire: the next poll
        raises ``ProviderLostRequest`` (resubmitted if ``free_resubmit``, else the job fails)."""
        self._requests.clear()

    # -- the seam ------------------------------------------------------------------------------

    def availability(self, route: RouteSpec) -> tuple[bool, str | None]:
        return (True, None) if self.available else (False, self.reason)

    async def submit(
        self, route: RouteSpec, job_input: dict[str, Any], *, job_id: str, kind: str
    ) -> ProviderRef:
        try:
            mapped = map_input(route, job_input)
        except ValueError as exc:
            raise ProviderUnavailable(f"Route {route.name}: {exc}.") from None
        call = Call("submit", route, job_id, None, dict(job_input), mapped, kind)
        outcome = self._next(call)
        if outcome.at_submit and outcome.error is not None:
            self.calls.append(call)
            raise outcome.error
        request_id = f"{self.name}-{next(self._ids)}"
        self.calls.append(Call("submit", route, job_id, request_id, call.input, mapped, kind))
        self._requests[request_id] = _Request(outcome, job_id)
        return ProviderRef(request_id)

    async def poll(self, route: RouteSpec, ref: ProviderRef) -> ProviderState:
        request = self._requests.get(ref.request_id)
        job_id = None if request is None else request.job_id
        self.calls.append(Call("poll", route, job_id, ref.request_id))
        if request is None:
            raise ProviderLostRequest(f"{self.name} does not know the request {ref.request_id}")
        outcome = request.outcome
        if request.cancelled:
            return ProviderState(StateKind.CANCELLED)
        if request.polls < len(outcome.steps):
            request.polls += 1
            return outcome.steps[request.polls - 1].state()
        if outcome.until is not None and not outcome.until.is_set():
            return outcome.steps[-1].state() if outcome.steps else running().state()
        if outcome.error is not None:
            return ProviderState(StateKind.FAILED, error=outcome.error)
        return ProviderState(
            StateKind.SUCCEEDED, progress=100, outputs=outcome.outputs, seed=outcome.seed
        )

    async def cancel(self, route: RouteSpec, ref: ProviderRef) -> None:
        request = self._requests.get(ref.request_id)
        job_id = None if request is None else request.job_id
        self.calls.append(Call("cancel", route, job_id, ref.request_id))
        if request is not None:
            request.cancelled = True

    async def aclose(self) -> None:
        self.closed = True  # the script and the calls stay: one fake may serve two apps

    def _next(self, call: Call) -> Outcome:
        if self.script is not None:
            return self.script(call)
        return self.outcomes.pop(0) if self.outcomes else self.default
