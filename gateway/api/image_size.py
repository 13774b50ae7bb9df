"""OpenAI's ``n`` and ``size`` read against a model's bounds, and named as the client sent them.

The canonical input calls them ``num_images``, ``width`` and ``height``; a client of the
OpenAI face sent ``n`` and ``size = "WxH"``, so errors must say ``n`` and ``size``, with the
bound that was broken (``size = "13x7"`` is well formed: its width is below the model's
minimum, and the message says so, rather than that the format is wrong).
"""

from __future__ import annotations

import re
from typing import Any

from gateway.api.common import body_int
from gateway.catalog import CatalogModel
from gateway.errors import InvalidRequest

__all__ = ["read_n", "read_size"]

_SIZE = re.compile(r"^\s*(\d{1,6})\s*[xX]\s*(\d{1,6})\s*$")
#: the most images one OpenAI request may ask for (OpenAI's own limit)
MAX_N = 10


def bounds(model: CatalogModel, field: str) -> tuple[float | None, float | None]:
    """The ``(minimum, maximum)`` of ``field`` for ``model``: the kind's, narrowed by the
    model's own ``limits``."""
    info = model.kind.input_model.model_fields.get(field)
    low: float | None = None
    high: float | None = None
    for rule in info.metadata if info is not None else ():
        low = getattr(rule, "ge", low)
        high = getattr(rule, "le", high)
    own_low, own_high = model.limits.get(f"min_{field}"), model.limits.get(f"max_{field}")
    if own_low is not None:
        low = own_low if low is None else max(low, own_low)
    if own_high is not None:
        high = own_high if high is None else min(high, own_high)
    return low, high


def read_n(body: dict[str, Any], model: CatalogModel) -> int:
    """``n`` (default 1), within the model's bounds of ``num_images`` and ``MAX_N``."""
    low, high = bounds(model, "num_images")
    return body_int(body, "n", 1, int(max(1, low or 1)), int(min(MAX_N, high or MAX_N)))


def read_size(value: Any, model: CatalogModel) -> dict[str, int]:
    """``{"width", "height"}`` from ``size`` (``"WIDTHxHEIGHT"``; ``"auto"`` or absent: the
    model's default), each side within the model's bounds."""
    if value is None or value == "auto":
        return {}
    match = _SIZE.match(value) if isinstance(value, str) else None
    if match is None:
        raise InvalidRequest(
            f"Invalid 'size': must be 'WIDTHxHEIGHT' in pixels, e.g. '1024x1024', or 'auto' "
            f"(got {value!r}).",
            param="size",
            code="invalid_value",
        )
    size = {"width": int(match.group(1)), "height": int(match.group(2))}
    for side, pixels in size.items():
        low, high = bounds(model, side)
        if (low is not None and pixels < low) or (high is not None and pixels > high):
            raise InvalidRequest(
                f"Invalid 'size': the {side} must be {_range(low, high)} pixels for this "
                f"model (got {value!r}).",
                param="size",
                code="out_of_range",
            )
    return size


def _range(low: float | None, high: float | None) -> str:
    if low is not None and high is not None:
        return f"between {low:g} and {high:g}"
    return f"at least {low:g}" if low is not None else f"at most {high:g}"
