"""What an emulator is told to do: its ``Behaviour`` knobs and the ``Scripted`` answers.

Scripts are per-route queues of ``Scripted`` answers consumed by the next requests on that
route (``"submit"``, ``"status"``, ``"result"``, ``"cancel"``, ``"list"``); a key narrowed to
one app or model (``"submit:owner/name"``) is consulted before the route's own queue. The
``"webhook"`` and ``"webhook:<event>"`` routes queue ``WebhookFault``s for webhook deliveries
instead (see webhook_faults.py).
"""

from __future__ import annotations

import copy
import math
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from tests.emulators.webhook_faults import WebhookFault, is_webhook_route

ScriptKind = Literal["ok", "error", "timeout", "malformed", "wrong_shape"]

_KINDS: dict[str, ScriptKind] = {
    "ok": "ok",
    "error": "error",
    "timeout": "timeout",
    "malformed": "malformed",
    "wrong_shape": "wrong_shape",
}


class BehaviourError(ValueError):
    """A behaviour update or a scripted answer that does not make sense."""


@dataclass(frozen=True)
class Scripted:
    """One scripted answer for the next request on a route.

    ``ok`` lets the request through; ``error`` answers ``status`` in the emulator's own error
    format (``message``, ``retry_after`` for 429/503); ``timeout`` sleeps ``hang_seconds``
    (default ``Behaviour.hang_seconds``) and then answers normally, or with ``status`` when it
    is an error: a client that gave up meanwhile has still created the job. ``malformed`` is
    a 200 with a non-JSON body and ``wrong_shape`` a 200 with JSON of the wrong shape.
    ``body`` replaces the rendered body verbatim (an nginx page, say).
    """

    kind: ScriptKind = "ok"
    status: int = 200
    message: str | None = None
    retry_after: int | None = None
    hang_seconds: float | None = None
    body: str | None = None
    content_type: str | None = None

    @classmethod
    def parse(cls, spec: object) -> Scripted:
        """Accept ``500``, ``"ok"``, ``"timeout"``, ``"malformed"``, ``"wrong_shape"``, ``"503"``
        or a mapping of the fields (``{"status": 429, "retry_after": 3}``)."""
        if isinstance(spec, Scripted):
            return spec
        if isinstance(spec, bool):
            raise BehaviourError(f"not a scripted answer: {spec!r}")
        if isinstance(spec, int):
            return cls._from_status(spec)
        if isinstance(spec, str):
            if spec in _KINDS and spec != "error":
                return cls(kind=_KINDS[spec])
            if spec.isdigit():
                return cls._from_status(int(spec))
            raise BehaviourError(f"not a scripted answer: {spec!r}")
        if isinstance(spec, Mapping):
            return cls._from_mapping(spec)
        raise BehaviourError(f"not a scripted answer: {spec!r}")

    @classmethod
    def _from_status(cls, status: int) -> Scripted:
        if 200 <= status < 300:
            return cls()
        if 400 <= status < 600:
            return cls(kind="error", status=status)
        raise BehaviourError(f"scripted status must be 2xx, 4xx or 5xx, not {status}")

    @classmethod
    def _from_mapping(cls, spec: Mapping[Any, Any]) -> Scripted:
        unknown = set(spec) - {f for f in cls.__dataclass_fields__}
        if unknown:
            raise BehaviourError(f"unknown scripted answer fields: {sorted(map(str, unknown))}")
        status = int(spec.get("status", 200))
        name = spec.get("kind") or ("error" if status >= 400 else "ok")
        kind = _KINDS.get(str(name))
        if kind is None:
            raise BehaviourError(f"unknown scripted answer kind: {name!r}")
        if kind == "error" and not 400 <= status < 600:
            raise BehaviourError(f"an error needs a 4xx or 5xx status, not {status}")
        if kind in ("ok", "malformed", "wrong_shape") and status != 200:
            raise BehaviourError(f"a {kind!r} answer is a 200, not {status}")
        message, body = spec.get("message"), spec.get("body")
        content_type = spec.get("content_type")
        hang = spec.get("hang_seconds")
        retry_after = spec.get("retry_after")
        return cls(
            kind=kind,
            status=status,
            message=None if message is None else str(message),
            retry_after=None if retry_after is None else int(retry_after),
            hang_seconds=None if hang is None else float(hang),
            body=None if body is None else str(body),
            content_type=None if content_type is None else str(content_type),
        )

    @property
    def is_error(self) -> bool:
        return self.status >= 400 and self.kind in ("error", "timeout")

    def to_json(self) -> dict[str, Any]:
        data = {f: getattr(self, f) for f in self.__dataclass_fields__}
        return {k: v for k, v in data.items() if v is not None}


def _non_negative(value: Any) -> float:
    number = float(value)
    if number < 0 or math.isnan(number):
        raise BehaviourError(f"expected a non-negative number, got {value!r}")
    return number


def _count(value: Any) -> int:
    if isinstance(value, bool) or int(value) != value or int(value) < 0:
        raise BehaviourError(f"expected a non-negative integer, got {value!r}")
    return int(value)


def _flag(value: Any) -> bool:
    if not isinstance(value, bool):
        raise BehaviourError(f"expected true or false, got {value!r}")
    return value


def _outcomes(value: Any) -> list[str]:
    outcomes = [str(v) for v in value]
    if any(v not in ("ok", "fail") for v in outcomes):
        raise BehaviourError(f"run outcomes are 'ok' or 'fail', got {value!r}")
    return outcomes


def _output_kind(value: Any) -> str:
    if value not in ("auto", "image", "video"):
        raise BehaviourError(f"output is 'auto', 'image' or 'video', got {value!r}")
    return str(value)


def _positive(value: Any) -> float:
    number = _non_negative(value)
    if number == 0 or math.isinf(number):
        raise BehaviourError(f"expected a positive number, got {value!r}")
    return number


def _delays(value: Any) -> list[float]:
    if not isinstance(value, list | tuple):
        raise BehaviourError(f"expected a list of seconds, got {value!r}")
    return [_non_negative(v) for v in value]


def _error_status(value: Any) -> int:
    status = _count(value)
    if not 400 <= status < 600:
        raise BehaviourError(f"expected a 4xx or 5xx status, got {value!r}")
    return status


_CONVERTERS: dict[str, Callable[[Any], Any]] = {
    "latency": _non_negative,
    "queue_time": _non_negative,
    "queue_position": _count,
    "hang_seconds": _non_negative,
    "fail_runs": _flag,
    "run_outcomes": _outcomes,
    "run_error": str,
    "run_error_status": _error_status,
    "run_error_type": str,
    "required_inputs": lambda v: [str(x) for x in v],
    "cancel_stops_running": _flag,
    "progress_steps": lambda v: max(1, _count(v)),
    "output": _output_kind,
    "rate_limit_per_minute": _count,
    "page_size": lambda v: max(1, _count(v)),
    "webhook_retry_delays": _delays,
    "webhook_timeout": _positive,
}


@dataclass
class Behaviour:
    """The knobs of an emulator; every field can be changed at run time.

    - ``queue_time`` (s) before a job starts, reporting ``queue_position`` at submit and
      counting down to 0; then ``latency`` (s) of running, in ``progress_steps`` log steps.
    - A run fails when the next ``run_outcomes`` entry is ``"fail"`` or, once they are used
      up, when ``fail_runs`` is set: ``run_error`` is its message; on fal the result replays
      ``run_error_status`` with ``X-Fal-Error-Type: run_error_type``. A key of
      ``required_inputs`` missing from the input fails too: a 422 from the fal app, a 422 at
      create on Replicate.
    - ``cancel_stops_running``: off, a running job ignores a cancel and runs to its end.
    - ``hang_seconds``: how long a ``"timeout"`` script hangs unless it says otherwise.
    - ``output``: ``"image"``, ``"video"`` or ``"auto"`` (video when the app's id says so).
    - ``rate_limit_per_minute`` (Replicate creates, 0 = off): a token bucket one minute deep.
    - ``page_size`` of Replicate's prediction list; ``scripts``: see ``Scripted``.
    - ``webhook_retry_delays``: seconds before each redelivery of a webhook that was not
      answered 2xx (fal retries 10 times over 2 hours, Replicate a few times within a minute:
      both shortened here); ``webhook_timeout``: seconds one delivery may take (fal's 15).
      ``webhook_faults``: the queued ``WebhookFault``s, by route (see webhook_faults.py).
    """

    latency: float = 0.0
    queue_time: float = 0.0
    queue_position: int = 0
    hang_seconds: float = 30.0
    fail_runs: bool = False
    run_outcomes: list[str] = field(default_factory=list)
    run_error: str = "CUDA out of memory"
    run_error_status: int = 500
    run_error_type: str = "internal_error"
    required_inputs: list[str] = field(default_factory=list)
    cancel_stops_running: bool = True
    progress_steps: int = 20
    output: str = "auto"
    rate_limit_per_minute: int = 0
    page_size: int = 100
    webhook_retry_delays: list[float] = field(
        default_factory=lambda: [0.1, 0.2, 0.5, 1.0, 2.0, 5.0, 10.0, 20.0, 30.0, 60.0]
    )
    webhook_timeout: float = 15.0
    scripts: dict[str, deque[Scripted]] = field(default_factory=dict)
    webhook_faults: dict[str, deque[WebhookFault]] = field(default_factory=dict)

    def update(self, changes: Mapping[str, Any]) -> None:
        """Apply a partial update; ``scripts`` replaces the queues of the routes it names."""
        unknown = set(changes) - set(_CONVERTERS) - {"scripts"}
        if unknown:
            raise BehaviourError(f"unknown behaviour fields: {sorted(unknown)}")
        converted: dict[str, Any] = {}
        try:
            for name, value in changes.items():
                if name != "scripts":
                    converted[name] = _CONVERTERS[name](value)
            queues = dict(changes.get("scripts") or {})
            scripts = {
                route: deque(Scripted.parse(s) for s in specs)
                for route, specs in queues.items()
                if not is_webhook_route(route)
            }
            faults = {
                route: deque(WebhookFault.parse(s) for s in specs)
                for route, specs in queues.items()
                if is_webhook_route(route)
            }
        except (TypeError, ValueError) as exc:
            raise BehaviourError(str(exc)) from exc
        for name, value in converted.items():
            setattr(self, name, value)
        self.scripts.update(scripts)
        self.webhook_faults.update(faults)

    def add_script(self, route: str, *responses: object) -> None:
        """Queue scripted answers for the next requests on ``route`` (faults on webhooks)."""
        if is_webhook_route(route):
            try:
                faults = [WebhookFault.parse(r) for r in responses]
            except ValueError as exc:
                raise BehaviourError(str(exc)) from exc
            self.webhook_faults.setdefault(route, deque()).extend(faults)
            return
        parsed = [Scripted.parse(r) for r in responses]
        self.scripts.setdefault(route, deque()).extend(parsed)

    def next_script(self, keys: tuple[str, ...]) -> Scripted | None:
        """Pop the answer for the most specific key that has one queued."""
        for key in keys:
            queue = self.scripts.get(key)
            if queue:
                return queue.popleft()
        return None

    def next_webhook_fault(self, keys: tuple[str, ...]) -> WebhookFault | None:
        """Pop the fault for the most specific webhook route that has one queued."""
        for key in keys:
            queue = self.webhook_faults.get(key)
            if queue:
                return queue.popleft()
        return None

    def take_webhook_fault(self, keys: tuple[str, ...], kind: str) -> WebhookFault | None:
        """Pop the next fault of those routes only when it is of ``kind`` (``"early"`` is
        decided at submit, before the delivery it belongs to exists)."""
        for key in keys:
            queue = self.webhook_faults.get(key)
            if queue:
                return queue.popleft() if queue[0].kind == kind else None
        return None

    def next_run_fails(self) -> bool:
        if self.run_outcomes:
            return self.run_outcomes.pop(0) == "fail"
        return self.fail_runs

    def copy(self) -> Behaviour:
        return copy.deepcopy(self)

    def restore(self, other: Behaviour) -> None:
        """Take every setting of ``other`` in place (references to this object stay valid)."""
        for name in self.__dataclass_fields__:
            setattr(self, name, copy.deepcopy(getattr(other, name)))

    def to_json(self) -> dict[str, Any]:
        data: dict[str, Any] = {name: getattr(self, name) for name in _CONVERTERS}
        data["scripts"] = {k: [s.to_json() for s in q] for k, q in self.scripts.items() if q}
        data["scripts"].update(
            {k: [f.to_json() for f in q] for k, q in self.webhook_faults.items() if q}
        )
        return data
