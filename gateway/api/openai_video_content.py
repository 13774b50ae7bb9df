"""``GET /v1/videos/{id}/content``'s variants: the video, a thumbnail, a spritesheet.

``video`` is the job's result file as it is stored, with its own content type (``video/mp4``
from fal and Replicate; ``image/gif`` from the sandbox, an animated GIF). ``thumbnail`` (its
first frame, ``image/webp``) and ``spritesheet`` (up to ``SPRITES`` frames spread over the
clip, in a grid, ``image/jpeg``) are drawn from the video's frames
(``openai_video_frames.py``): Pillow reads animated GIF and WebP; MP4, WebM and QuickTime
need PyAV, the optional ``video`` extra. A video this gateway cannot read frames from (an
MP4 without PyAV) has only the ``video`` variant: the others are a 400 ``unsupported_variant``
that says so.
"""

from __future__ import annotations

import io
import math

from PIL import Image

from gateway.api.openai_video_frames import drawable, first_frame, spread_frames
from gateway.errors import InvalidRequest

VARIANTS = ("video", "thumbnail", "spritesheet")
SPRITES = 16
SPRITE_WIDTH = 160


def check_variant(raw: str | None) -> str:
    variant = raw or "video"
    if variant not in VARIANTS:
        raise InvalidRequest(
            f"Invalid 'variant': must be one of {', '.join(VARIANTS)} (got '{variant}').",
            param="variant",
            code="invalid_value",
        )
    return variant


def refuse_undrawable(variant: str, content_type: str, model: str) -> None:
    """A 400 when ``variant`` cannot be drawn from a video of ``content_type``."""
    if variant != "video" and not drawable(content_type):
        raise InvalidRequest(
            f"Invalid 'variant': the model '{model}' makes {content_type} videos, which this "
            f"gateway cannot draw a {variant} from; only 'video' is available.",
            param="variant",
            code="unsupported_variant",
        )


def thumbnail(data: bytes, content_type: str) -> bytes:
    """The first frame, as WebP."""
    out = io.BytesIO()
    first_frame(data, content_type).save(out, "WEBP", quality=85)
    return out.getvalue()


def spritesheet(data: bytes, content_type: str) -> bytes:
    """Frames spread over the clip, each at most ``SPRITE_WIDTH`` wide, in a grid, as JPEG."""
    frames = spread_frames(data, content_type, SPRITES, SPRITE_WIDTH)
    width, height = frames[0].size
    columns = min(4, len(frames))
    rows = math.ceil(len(frames) / columns)
    sheet = Image.new("RGB", (columns * width, rows * height))
    for i, frame in enumerate(frames):
        if frame.size != (width, height):  # a clip whose frame size changes midway
            frame = frame.resize((width, height), Image.Resampling.LANCZOS)
        sheet.paste(frame, ((i % columns) * width, (i // columns) * height))
    out = io.BytesIO()
    sheet.save(out, "JPEG", quality=80)
    return out.getvalue()


def draw(variant: str, data: bytes, content_type: str) -> tuple[bytes, str]:
    """``variant`` (thumbnail or spritesheet) of a drawable video: bytes and content type."""
    if variant == "thumbnail":
        return thumbnail(data, content_type), "image/webp"
    return spritesheet(data, content_type), "image/jpeg"
