"""Faults a test injects into an emulator's webhook deliveries, queued like ``Scripted`` answers.

Routes: ``"webhook:<event>"`` (``completed`` on fal; ``start``, ``output``, ``logs``,
``completed`` on Replicate) is consulted before ``"webhook"``; each delivery takes the next
fault of the most specific route that has one queued, and goes out normally when none is:

- ``"ok"``: delivered normally.
- ``"drop"``: never sent, nor retried: a lost delivery.
- ``{"kind": "delay", "seconds": 2}``: sent that much later than due; the job's later
  deliveries do not wait for it.
- ``{"kind": "duplicate", "times": 2, "seconds": 0}``: after its first attempt, sent ``times``
  more times (each freshly signed, as a provider's redelivery is), ``seconds`` apart; 0 sends
  the copies all at once.
- ``"bad_signature"``: every attempt carries a signature that does not verify.
- ``{"kind": "stale", "seconds": 600}``: signed with a timestamp that far in the past.
- ``"early"``: read at submit, for the terminal delivery: the job ends at once, and its
  deliveries are sent (and answered) before the submit's HTTP response.
- ``"late"``: held back until just after the job's terminal delivery (a Replicate ``start``
  that arrives after its ``completed``).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

FaultKind = Literal["ok", "drop", "delay", "duplicate", "bad_signature", "stale", "early", "late"]

_KINDS: dict[str, FaultKind] = {
    "ok": "ok",
    "drop": "drop",
    "delay": "delay",
    "duplicate": "duplicate",
    "bad_signature": "bad_signature",
    "stale": "stale",
    "early": "early",
    "late": "late",
}
_DEFAULT_SECONDS: dict[str, float] = {"delay": 1.0, "duplicate": 0.0, "stale": 600.0}
_FIELDS = frozenset({"kind", "seconds", "times"})


def is_webhook_route(route: str) -> bool:
    """Whether a script route names webhook deliveries rather than HTTP answers."""
    return route == "webhook" or route.startswith("webhook:")


@dataclass(frozen=True)
class WebhookFault:
    """What happens to one delivery; see the module docstring for each kind."""

    kind: FaultKind = "ok"
    seconds: float = 0.0
    times: int = 1

    @classmethod
    def parse(cls, spec: object) -> WebhookFault:
        """Accept a kind (``"drop"``) or a mapping (``{"kind": "delay", "seconds": 2}``)."""
        if isinstance(spec, WebhookFault):
            return spec
        if isinstance(spec, str):
            return cls._build(spec, None, None)
        if isinstance(spec, Mapping):
            unknown = set(spec) - _FIELDS
            if unknown:
                raise ValueError(f"unknown webhook fault fields: {sorted(map(str, unknown))}")
            return cls._build(spec.get("kind", "ok"), spec.get("seconds"), spec.get("times"))
        raise ValueError(f"not a webhook fault: {spec!r}")

    @classmethod
    def _build(cls, name: Any, seconds: Any, times: Any) -> WebhookFault:
        kind = _KINDS.get(str(name))
        if kind is None:
            raise ValueError(f"webhook fault kind must be one of {sorted(_KINDS)}, not {name!r}")
        if seconds is None:
            value = _DEFAULT_SECONDS.get(kind, 0.0)
        elif kind not in _DEFAULT_SECONDS:
            raise ValueError(f"a {kind!r} webhook fault takes no seconds")
        else:
            value = float(seconds)
        if value < 0 or math.isnan(value) or math.isinf(value):
            raise ValueError(f"webhook fault seconds must be 0 or more, not {seconds!r}")
        count = 1
        if times is not None:
            if kind != "duplicate":
                raise ValueError(f"only a 'duplicate' webhook fault takes times, not {kind!r}")
            if isinstance(times, bool) or not isinstance(times, int) or times < 1:
                raise ValueError(f"duplicate times must be a positive integer, not {times!r}")
            count = times
        return cls(kind=kind, seconds=value, times=count)

    def to_json(self) -> dict[str, Any]:
        data: dict[str, Any] = {"kind": self.kind}
        if self.kind in _DEFAULT_SECONDS:
            data["seconds"] = self.seconds
        if self.kind == "duplicate":
            data["times"] = self.times
        return data


NO_FAULT = WebhookFault()
