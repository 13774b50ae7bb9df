"""The options a catalog route may set (``options = {...}``), checked when the catalog loads.

Every route may set the mapping's options (``size``, ``drop_seed``: providers/mapping.py)
and ``timeout_seconds`` (how long the route may take before the next one is tried:
gateway/scheduler/timeouts.py); each provider adds its own.
"""

from __future__ import annotations

import math

__all__ = ["ROUTE_TIMEOUT_OPTION", "check_route_timeout"]

#: the route option that sets one route's limit, in seconds
ROUTE_TIMEOUT_OPTION = "timeout_seconds"


def check_route_timeout(value: object) -> str | None:
    """Why ``value`` is not a valid ``timeout_seconds``, or None when it is."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return "must be a number of seconds"
    if not math.isfinite(value) or value <= 0:
        return "must be more than 0 seconds"
    return None
