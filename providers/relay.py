"""A verified delivery's state as text, for the replica that follows its request.

A provider's webhook may land on a replica that does not hold its job's lease; that replica
relays the delivery to the others (``JobStore.relay_delivery``: on PostgreSQL a NOTIFY,
whose payload is limited to 8,000 bytes). Relayed as a bare "read it now", the follower
polled the request's status and then its result: two round trips a job that the delivery
had already answered. ``encode_state`` writes the state the delivery brought (kind,
progress, outputs, seed, error, compute seconds) as compact JSON; ``decode_state`` reads it
back into the same ``ProviderState``. Either returns None when it cannot (a state of None,
an output that is not JSON, an error class it does not know, malformed text): the follower
then reads the request itself, as before.
"""

from __future__ import annotations

import base64
import binascii
import json
from typing import Any, TypeVar

from gateway.errors import (
    ProviderError,
    ProviderInputError,
    ProviderLostRequest,
    ProviderResourceExhausted,
    ProviderResultLost,
    ProviderSubmitUncertain,
    ProviderTransientError,
    ProviderUnavailable,
)
from providers.base import Output, ProviderState, StateKind

__all__ = ["decode_state", "encode_state"]

T = TypeVar("T")

#: the provider errors a relayed state may carry, by class name
ERRORS: dict[str, type[ProviderError]] = {
    cls.__name__: cls
    for cls in (
        ProviderError,
        ProviderInputError,
        ProviderTransientError,
        ProviderResourceExhausted,
        ProviderUnavailable,
        ProviderLostRequest,
        ProviderResultLost,
        ProviderSubmitUncertain,
    )
}


def encode_state(state: ProviderState | None) -> str | None:
    """``state`` as JSON text, or None when it cannot be written (see the module)."""
    if state is None:
        return None
    data: dict[str, Any] = {"kind": state.kind.value}
    for key in ("progress", "queue_position", "seed", "compute_seconds"):
        value = getattr(state, key)
        if value is not None:
            data[key] = value
    if state.outputs:
        data["outputs"] = [_output(o) for o in state.outputs]
    if state.error is not None:
        error = state.error
        if ERRORS.get(type(error).__name__) is not type(error):
            return None
        data["error"] = {
            "class": type(error).__name__,
            "message": error.message,
            "code": error.code,
            "retry_after": error.retry_after,
            "param": error.param,
        }
    try:
        return json.dumps(data, separators=(",", ":"), allow_nan=False)
    except (TypeError, ValueError):  # an output's extra that is not JSON
        return None


def decode_state(text: str | None) -> ProviderState | None:
    """The state ``encode_state`` wrote, or None when ``text`` is not one."""
    if not text:
        return None
    try:
        data = json.loads(text)
        error = None
        if (raw := data.get("error")) is not None:
            error = ERRORS[raw["class"]](
                _opt(raw.get("message"), str),
                code=_opt(raw.get("code"), str),
                retry_after=_opt(raw.get("retry_after"), float),
                param=_opt(raw.get("param"), str),
            )
        return ProviderState(
            StateKind(data["kind"]),
            progress=_opt(data.get("progress"), int),
            queue_position=_opt(data.get("queue_position"), int),
            outputs=tuple(_read_output(o) for o in data.get("outputs", ())),
            seed=_opt(data.get("seed"), int),
            error=error,
            compute_seconds=_opt(data.get("compute_seconds"), float),
        )
    except (ValueError, KeyError, TypeError, AttributeError, binascii.Error):
        return None


def _output(output: Output) -> dict[str, Any]:
    data: dict[str, Any] = {"content_type": output.content_type}
    if output.data is not None:
        data["data"] = base64.b64encode(output.data).decode("ascii")
    for key in ("url", "width", "height"):
        if (value := getattr(output, key)) is not None:
            data[key] = value
    if output.extra:
        data["extra"] = output.extra
    return data


def _read_output(data: dict[str, Any]) -> Output:
    raw = data.get("data")
    extra = data.get("extra") or {}
    if not isinstance(extra, dict):
        raise TypeError("an output's extra is not an object")
    return Output(
        content_type=_need(data["content_type"], str),
        data=None if raw is None else base64.b64decode(_need(raw, str), validate=True),
        url=_opt(data.get("url"), str),
        width=_opt(data.get("width"), int),
        height=_opt(data.get("height"), int),
        extra=extra,
    )


def _opt(value: Any, kind: type[T]) -> T | None:
    return None if value is None else _need(value, kind)


def _need(value: Any, kind: type[T]) -> T:
    if kind is float and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)
    if isinstance(value, bool) or not isinstance(value, kind):
        raise TypeError(f"expected {kind.__name__}")
    return value
