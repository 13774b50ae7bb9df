"""``GET /v1/videos/{id}/content``'s variants: the video, a thumbnail, a spritesheet.

``video`` is the job's result file as it is stored, with its own content type (``video/mp4``
from fal and Replicate; ``image/gif`` from the sandbox, an animated GIF). ``thumbnail`` (its
first frame, ``image/webp``) and ``spritesheet`` (up to ``SPRITES`` frames spread over the
clip, in a grid, ``image/jpeg``) are drawn from the video with Pillow, which reads animated
GIF and WebP; for an MP4 or WebM (no decoder here) they are a 400 ``unsupported_variant``
that says so.
"""

from __future__ import annotations

import io
import math

from PIL import Image, ImageSequence

from gateway.errors import InvalidRequest

VARIANTS = ("video", "thumbnail", "spritesheet")
#: the video types Pillow can read frames from
DRAWABLE = frozenset({"image/gif", "image/webp"})
SPRITES = 16
SPRITE_WIDTH = 160
#: the most pixels of one frame decoded for a preview
MAX_FRAME_PIXELS = 16 * 1024 * 1024


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
    if variant != "video" and content_type not in DRAWABLE:
        raise InvalidRequest(
            f"Invalid 'variant': the model '{model}' makes {content_type} videos, which this "
            f"gateway cannot draw a {variant} from; only 'video' is available.",
            param="variant",
            code="unsupported_variant",
        )


def _frames(data: bytes) -> list[Image.Image]:
    """Up to ``SPRITES`` frames, spread evenly over the clip, as RGB."""
    with Image.open(io.BytesIO(data)) as clip:
        if clip.width * clip.height > MAX_FRAME_PIXELS:
            raise ValueError("frame too large")
        total = getattr(clip, "n_frames", 1)
        step = max(1, math.ceil(total / SPRITES))
        return [
            frame.convert("RGB")
            for i, frame in enumerate(ImageSequence.Iterator(clip))
            if i % step == 0
        ][:SPRITES]


def thumbnail(data: bytes) -> bytes:
    """The first frame, as WebP."""
    with Image.open(io.BytesIO(data)) as clip:
        if clip.width * clip.height > MAX_FRAME_PIXELS:
            raise ValueError("frame too large")
        first = clip.convert("RGB")
    out = io.BytesIO()
    first.save(out, "WEBP", quality=85)
    return out.getvalue()


def spritesheet(data: bytes) -> bytes:
    """Frames spread over the clip, each ``SPRITE_WIDTH`` wide, in a grid, as JPEG."""
    frames = _frames(data)
    first = frames[0]
    width = min(SPRITE_WIDTH, first.width)
    height = max(1, round(first.height * width / first.width))
    columns = min(4, len(frames))
    rows = math.ceil(len(frames) / columns)
    sheet = Image.new("RGB", (columns * width, rows * height))
    for i, frame in enumerate(frames):
        sprite = frame.resize((width, height), Image.Resampling.LANCZOS)
        sheet.paste(sprite, ((i % columns) * width, (i // columns) * height))
    out = io.BytesIO()
    sheet.save(out, "JPEG", quality=80)
    return out.getvalue()


def draw(variant: str, data: bytes) -> tuple[bytes, str]:
    """``variant`` (thumbnail or spritesheet) of a drawable video: bytes and content type."""
    if variant == "thumbnail":
        return thumbnail(data), "image/webp"
    return spritesheet(data), "image/jpeg"
