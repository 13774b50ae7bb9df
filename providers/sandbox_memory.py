"""How much memory a sandbox render may hold at its peak: what it reserves of the sandbox's
``MemoryBudget`` (``providers/budget.py``) before it starts.

An estimate from what is known before the render: the job's own sizes and counts, and the
sizes the input images' headers declare (nothing is decoded here). Measured with Pillow, an
upscale holds 5 to 7 bytes per pixel of its input and output together (source, its working
copy, the resize's intermediate, the result and the PNG encoder), so every full-colour image
a render touches counts ``BYTES_PER_PIXEL`` per pixel; a video's palette frames one byte.
Every operation refuses a result over its own pixel limit, so no single render's estimate
(or memory) is unbounded.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from providers.sandbox_media import (
    MAX_INPUT_PIXELS,
    MAX_OUTPUT_PIXELS,
    frame_count,
    image_size,
)

__all__ = ["BYTES_PER_PIXEL", "render_cost"]

BYTES_PER_PIXEL = 8


def render_cost(target: str, job_input: dict[str, Any], images: Sequence[bytes]) -> int:
    """The bytes a render of ``target`` on ``job_input`` (reading ``images``) may hold."""
    sizes = [image_size(data) or (0, 0) for data in images]
    pixels = [min(w * h, MAX_INPUT_PIXELS) for w, h in sizes]
    inputs = sum(pixels)
    if target == "image":
        width, height = _int(job_input, "width", 1024), _int(job_input, "height", 1024)
        return BYTES_PER_PIXEL * width * height * _int(job_input, "num_images", 1)
    if target == "video":
        width, height = _int(job_input, "width", 512), _int(job_input, "height", 512)
        duration, fps = _int(job_input, "duration", 4), _int(job_input, "fps", 8)
        frames = frame_count(max(1, duration), max(1, fps), width, height)
        return BYTES_PER_PIXEL * (2 * width * height + inputs) + frames * width * height
    if target == "upscale":
        factor = _int(job_input, "scale_factor", 2)
        return BYTES_PER_PIXEL * (inputs + min(inputs * factor * factor, MAX_OUTPUT_PIXELS))
    if target == "face_swap":  # the result is the size of the target image, the last one
        return BYTES_PER_PIXEL * (inputs + (pixels[-1] if pixels else 0))
    return BYTES_PER_PIXEL * (inputs + _edited(target, job_input, sizes))


def _edited(target: str, job_input: dict[str, Any], sizes: list[tuple[int, int]]) -> int:
    """The pixels of the result of one of the Tasks API's operations (sandbox_edits)."""
    w, h = max(sizes, key=lambda s: s[0] * s[1], default=(0, 0))
    if target == "llm":
        return 0
    if target == "fal_app":  # sides clamped to 64..1024
        return 1024 * 1024
    if target == "background_removal":  # one result per input, each its size
        return sum(a * b for a, b in sizes)
    width, height = job_input.get("width"), job_input.get("height")
    size = (width, height) if isinstance(width, int) and isinstance(height, int) else None
    if target == "edit" and size is None and w and h:
        if isinstance(width, int):
            size = (width, round(h * width / w))
        elif isinstance(height, int):
            size = (round(w * height / h), height)
    elif target == "refine" and size is None:
        factor = job_input.get("scale_factor")
        if isinstance(factor, int | float):
            size = (round(w * factor), round(h * factor))
    elif target == "image_adjust":
        tw, th = job_input.get("target_width"), job_input.get("target_height")
        ratio = job_input.get("aspect_ratio")
        padded = w * h
        if isinstance(ratio, int | float) and ratio > 0 and w and h:
            padded = round(h * ratio) * h if w / h < ratio else w * round(w / ratio)
        target_pixels = 2 * tw * th if isinstance(tw, int) and isinstance(th, int) else 0
        return min(max(padded, target_pixels), 2 * MAX_INPUT_PIXELS)
    result = size[0] * size[1] if size else w * h
    return min(max(result, 0), MAX_INPUT_PIXELS)


def _int(job_input: dict[str, Any], key: str, default: int) -> int:
    value = job_input.get(key)
    return value if isinstance(value, int) and not isinstance(value, bool) else default
