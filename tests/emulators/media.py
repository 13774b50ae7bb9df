"""The files an emulated job produces, served by the emulator itself under ``/files/``.

A file name carries everything needed to rebuild it (``{id}-{n}-{w}x{h}.png``,
``{id}.mp4``), so serving one needs no state: the PNG is a real image of that size made with
Pillow; the MP4 is a real clip, a square crossing the frame (``video.py``, built with PyAV,
imported only when an emulator first serves a video).
"""

from __future__ import annotations

import io
import re
from functools import lru_cache
from typing import Any

from PIL import Image
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

DEFAULT_SIZE = (64, 64)
MAX_SIDE = 4096

# fal's named image sizes.
FAL_IMAGE_SIZES: dict[str, tuple[int, int]] = {
    "square_hd": (1024, 1024),
    "square": (512, 512),
    "portrait_4_3": (768, 1024),
    "portrait_16_9": (576, 1024),
    "landscape_4_3": (1024, 768),
    "landscape_16_9": (1024, 576),
}

_PNG_NAME = re.compile(r"^[A-Za-z0-9_-]+-(\d+)-(\d+)x(\d+)\.png$")
_MP4_NAME = re.compile(r"^[A-Za-z0-9_-]+\.mp4$")


def _side(value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float) and value > 0:
        return min(int(value), MAX_SIDE)
    return None


def requested_size(arguments: Any) -> tuple[int, int]:
    """The image size asked for: fal ``image_size`` (a name or ``{width, height}``), or
    ``width``/``height`` (Replicate style); 64x64 when nothing usable is given."""
    if not isinstance(arguments, dict):
        return DEFAULT_SIZE
    size = arguments.get("image_size")
    if isinstance(size, str) and size in FAL_IMAGE_SIZES:
        return FAL_IMAGE_SIZES[size]
    if isinstance(size, dict):
        width, height = _side(size.get("width")), _side(size.get("height"))
        if width and height:
            return width, height
    width, height = _side(arguments.get("width")), _side(arguments.get("height"))
    if width and height:
        return width, height
    return DEFAULT_SIZE


def requested_count(arguments: Any, *keys: str, limit: int = 8) -> int:
    if isinstance(arguments, dict):
        for key in keys:
            value = arguments.get(key)
            if isinstance(value, int) and not isinstance(value, bool) and value > 0:
                return min(value, limit)
    return 1


def wants_video(app: str, output: str) -> bool:
    """``Behaviour.output``: "image", "video", or "auto" (video when the app's id says so)."""
    if output == "auto":
        return "video" in app.lower()
    return output == "video"


def png_name(job_id: str, index: int, size: tuple[int, int]) -> str:
    return f"{job_id}-{index}-{size[0]}x{size[1]}.png"


def mp4_name(job_id: str) -> str:
    return f"{job_id}.mp4"


@lru_cache(maxsize=64)
def png_bytes(width: int, height: int, index: int = 0) -> bytes:
    colour = ((40 + 70 * index) % 256, (120 + 35 * index) % 256, 200)
    buffer = io.BytesIO()
    Image.new("RGB", (width, height), colour).save(buffer, format="PNG")
    return buffer.getvalue()


def mp4_bytes() -> bytes:
    """Every emulated video job's MP4 (the same playable clip; see ``video.py``)."""
    from tests.emulators.video import clip_bytes  # PyAV only once a video is asked for

    return clip_bytes()


async def serve_file(request: Request) -> Response:
    name = request.path_params["name"]
    if match := _PNG_NAME.match(name):
        index, width, height = (int(g) for g in match.groups())
        if 0 < width <= MAX_SIDE and 0 < height <= MAX_SIDE:
            return Response(png_bytes(width, height, index % 8), media_type="image/png")
    elif _MP4_NAME.match(name):
        return Response(mp4_bytes(), media_type="video/mp4")
    return Response(b'{"detail": "Not found"}', 404, media_type="application/json")


files_route = Route("/files/{name}", serve_file, methods=["GET", "HEAD"])
