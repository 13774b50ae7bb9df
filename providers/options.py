"""The options a catalog route may set (``options = {...}``), checked when the catalog loads.

Every route may set the mapping's options (``size``, ``drop_seed``: providers/mapping.py)
and ``timeout_seconds`` (how long the route may take before the next one is tried:
gateway/scheduler/timeouts.py); each provider adds its own, read by its module:

- sandbox (providers/sandbox.py): ``latency``, ``failure_rate``, ``art``
- fal (providers/fal.py): ``logs``, ``start_timeout``, ``priority``, ``hint``, ``path``
- replicate (providers/replicate.py): ``deployment``
- local (providers/local_pipelines.py): ``pipeline``, ``device``, ``dtype``, ``scheduler``,
  ``attention_slicing``, ``cpu_offload``, ``video_format``, ``max_frames``

Any other key is refused when the catalog loads: a misspelt option would otherwise be
ignored in silence. A provider this table does not list (a test's fake) takes any option.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

__all__ = [
    "COMMON_OPTIONS",
    "ROUTE_OPTIONS",
    "ROUTE_TIMEOUT_OPTION",
    "check_route_timeout",
    "unknown_options",
]

#: the route option that sets one route's limit, in seconds
ROUTE_TIMEOUT_OPTION = "timeout_seconds"
#: the options every route may set
COMMON_OPTIONS = frozenset({"size", "drop_seed", ROUTE_TIMEOUT_OPTION})
#: each built-in provider's own options
ROUTE_OPTIONS: dict[str, frozenset[str]] = {
    "sandbox": frozenset({"latency", "failure_rate", "art"}),
    "fal": frozenset({"logs", "start_timeout", "priority", "hint", "path"}),
    "replicate": frozenset({"deployment"}),
    "local": frozenset(
        {
            "pipeline",
            "device",
            "dtype",
            "scheduler",
            "attention_slicing",
            "cpu_offload",
            "video_format",
            "max_frames",
        }
    ),
}


def unknown_options(provider: str, options: Iterable[str]) -> tuple[list[str], frozenset[str]]:
    """The keys of ``options`` a ``provider`` route does not take (in order), and the ones
    it does; nothing is unknown for a provider the table does not list."""
    own = ROUTE_OPTIONS.get(provider)
    if own is None:
        return [], COMMON_OPTIONS
    known = COMMON_OPTIONS | own
    return [key for key in options if key not in known], known


def check_route_timeout(value: object) -> str | None:
    """Why ``value`` is not a valid ``timeout_seconds``, or None when it is."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return "must be a number of seconds"
    if not math.isfinite(value) or value <= 0:
        return "must be more than 0 seconds"
    return None
