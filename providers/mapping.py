"""Declarative input mapping: a kind's canonical input -> one route's provider input.

A catalog route says how to translate, with no code:

``input_map``
    canonical field -> provider field. A dotted target (``"extra.guidance"``) nests; an empty
    target drops the field. Fields not named keep their canonical name.
``constants``
    provider fields with fixed values, applied last (they win over mapped input).
``options.size``
    how ``width``/``height`` reach the provider: ``"width_height"`` (default: as they are),
    ``"image_size"`` (fal's ``{"width", "height"}`` object), ``"aspect_ratio"`` (the nearest
    of the common ratios, e.g. ``"16:9"``), ``"size"`` (a ``"WxH"`` string) or ``"none"``.
``options.drop_seed``
    true for targets that reject a ``seed`` field.

Media URLs the gateway stores for a job (``data:`` URLs included) are passed as they are.
"""

from __future__ import annotations

from collections.abc import Collection
from typing import Any

from providers.base import RouteSpec

SIZE_MODES = ("width_height", "image_size", "aspect_ratio", "size", "none")
#: the size modes that send one value under a name of their own (renamed by ``input_map``)
_SIZE_KEYS = ("image_size", "aspect_ratio", "size")
ASPECT_RATIOS = ("1:1", "16:9", "9:16", "4:3", "3:4", "3:2", "2:3", "21:9", "9:21", "5:4", "4:5")


def nearest_aspect_ratio(width: int, height: int) -> str:
    target = width / height

    def distance(ratio: str) -> float:
        w, h = (int(p) for p in ratio.split(":"))
        return abs(w / h - target)

    return min(ASPECT_RATIOS, key=distance)


def _put(out: dict[str, Any], dotted: str, value: Any) -> None:
    parts = dotted.split(".")
    node = out
    for part in parts[:-1]:
        child = node.get(part)
        if not isinstance(child, dict):
            child = {}
            node[part] = child
        node = child
    node[parts[-1]] = value


def map_input(route: RouteSpec, job_input: dict[str, Any]) -> dict[str, Any]:
    size_mode = str(route.options.get("size", "width_height"))
    if size_mode not in SIZE_MODES:
        raise ValueError(f"unknown size mode '{size_mode}' (known: {', '.join(SIZE_MODES)})")
    out: dict[str, Any] = {}
    for name, value in job_input.items():
        if value is None:
            continue
        if name in ("width", "height") and size_mode != "width_height":
            continue
        if name == "seed" and route.options.get("drop_seed"):
            continue
        target = route.input_map.get(name, name)
        if target:
            _put(out, target, value)
    width, height = job_input.get("width"), job_input.get("height")
    if isinstance(width, int) and isinstance(height, int):
        if size_mode == "image_size":
            _put(
                out,
                route.input_map.get("image_size", "image_size"),
                {"width": width, "height": height},
            )
        elif size_mode == "aspect_ratio":
            _put(
                out,
                route.input_map.get("aspect_ratio", "aspect_ratio"),
                nearest_aspect_ratio(width, height),
            )
        elif size_mode == "size":
            _put(out, route.input_map.get("size", "size"), f"{width}x{height}")
    for name, value in route.constants.items():
        _put(out, name, value)
    return out


def validate_route_mapping(
    route: RouteSpec, fields: Collection[str] | None = None
) -> tuple[str, str] | None:
    """``(field, problem)`` for a bad mapping option, or None (checked when the catalog loads).

    ``fields`` are the kind's canonical fields (None for a kind that takes any). Refused: an
    ``input_map`` entry for a field the kind lacks (a misspelling would send the real field
    under its own name), and two values sent to one provider field, or one inside the other
    (one of them would be lost).
    """
    size_mode = str(route.options.get("size", "width_height"))
    if size_mode not in SIZE_MODES:
        return "options.size", f"unknown size mode '{size_mode}' (known: {', '.join(SIZE_MODES)})"
    sent: dict[str, str] = {}  # provider path -> the canonical field sent there
    for name in dict.fromkeys([*(fields or ()), *route.input_map]):
        if name in _SIZE_KEYS:
            continue
        if fields is not None and name not in fields:
            return f"input_map.{name}", f"the kind has no parameter '{name}'"
        skipped = name in ("width", "height") and size_mode != "width_height"
        if skipped or (name == "seed" and route.options.get("drop_seed")):
            continue
        target = route.input_map.get(name, name)
        if target and (problem := _claim(sent, target, f"'{name}'")):
            return f"input_map.{name}", problem
    if size_mode in _SIZE_KEYS:
        target = route.input_map.get(size_mode, size_mode)
        if problem := _claim(sent, target, f"the size ({size_mode})"):
            return (
                "input_map." + size_mode if size_mode in route.input_map else "options.size"
            ), problem
    return None


def _claim(sent: dict[str, str], target: str, what: str) -> str | None:
    """Record that ``what`` is sent to ``target``, or say why it cannot be."""
    if "" in target.split("."):
        return f"'{target}' is not a provider field name (it has an empty part)"
    for path, other in sent.items():
        if path == target or path.startswith(target + ".") or target.startswith(path + "."):
            return f"{other} is sent to '{path}' and {what} to '{target}': one value would be lost"
    sent[target] = what
    return None
