"""Frames read from a stored video, for ``GET /v1/videos/{id}/content``'s previews.

Two readers, chosen by the video's content type: Pillow for animated GIF and WebP (the
sandbox's videos), and PyAV (FFmpeg; the optional ``video`` extra) for MP4, WebM and
QuickTime, what fal's, Replicate's and the local provider's video models make. Without PyAV
installed those are not ``drawable`` and the API answers a 400 for their previews, as it did
before PyAV was supported; nothing else needs it.

Bounds, since the bytes come from a provider: a frame larger than ``MAX_FRAME_PIXELS`` is
refused before it is decoded, at most ``MAX_DECODED_FRAMES`` frames are decoded (a longer clip's
spritesheet covers its start), and the frames kept for a spritesheet are scaled down as they are
decoded. A file that does not decode raises ``ValueError``: the caller's 400.
"""

from __future__ import annotations

import importlib.util
import io
import math
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from functools import cache
from typing import TYPE_CHECKING

from PIL import Image, ImageSequence

if TYPE_CHECKING:
    from av.container import InputContainer
    from av.video.frame import VideoFrame
    from av.video.stream import VideoStream

#: the types Pillow reads frames from
PILLOW_TYPES = frozenset({"image/gif", "image/webp"})
#: the types PyAV reads frames from, when it is installed
PYAV_TYPES = frozenset({"video/mp4", "video/webm", "video/quicktime"})
#: the most pixels of one frame decoded for a preview
MAX_FRAME_PIXELS = 16 * 1024 * 1024
#: the most frames of one clip PyAV decodes for a spritesheet (ten minutes at 24 fps)
MAX_DECODED_FRAMES = 14_400


@cache
def pyav_installed() -> bool:
    """Whether PyAV (``av``) can be imported: the ``video`` extra is installed."""
    return importlib.util.find_spec("av") is not None


def drawable(content_type: str) -> bool:
    """Whether frames can be read from a video of ``content_type`` here."""
    return content_type in PILLOW_TYPES or (content_type in PYAV_TYPES and pyav_installed())


def _check_size(width: int, height: int) -> None:
    if width * height > MAX_FRAME_PIXELS:
        raise ValueError(f"frame too large ({width}x{height})")


def first_frame(data: bytes, content_type: str) -> Image.Image:
    """The clip's first frame, as RGB at its own size."""
    if content_type in PILLOW_TYPES:
        with Image.open(io.BytesIO(data)) as clip:
            _check_size(clip.width, clip.height)
            return clip.convert("RGB")
    with _pyav_stream(data) as (container, stream):
        for frame in _decoded(container, stream):
            return _picture(frame, frame.width, frame.height)
    raise ValueError("the video has no frames")


def spread_frames(data: bytes, content_type: str, count: int, width: int) -> list[Image.Image]:
    """Up to ``count`` frames spread evenly over the clip, as RGB, at most ``width`` wide."""
    if content_type in PILLOW_TYPES:
        frames = _pillow_frames(data, count)
    else:
        frames = _pyav_frames(data, count, width)
    if not frames:
        raise ValueError("the video has no frames")
    return [_narrow(frame, width) for frame in frames]


def _narrow(frame: Image.Image, width: int) -> Image.Image:
    if frame.width <= width:
        return frame
    height = max(1, round(frame.height * width / frame.width))
    return frame.resize((width, height), Image.Resampling.LANCZOS)


def _pillow_frames(data: bytes, count: int) -> list[Image.Image]:
    with Image.open(io.BytesIO(data)) as clip:
        _check_size(clip.width, clip.height)
        total = getattr(clip, "n_frames", 1)
        step = max(1, math.ceil(total / count))
        return [
            frame.convert("RGB")
            for i, frame in enumerate(ImageSequence.Iterator(clip))
            if i % step == 0
        ][:count]


def _pyav_frames(data: bytes, count: int, width: int) -> list[Image.Image]:
    """Every ``stride``-th frame, the stride doubling (and every other kept frame dropped)
    whenever more than ``2 * count`` are kept: evenly spread without knowing the length."""
    kept: list[Image.Image] = []
    stride = 1
    with _pyav_stream(data) as (container, stream):
        for index, frame in enumerate(_decoded(container, stream)):
            if index >= MAX_DECODED_FRAMES:
                break
            if index % stride:
                continue
            scale = min(1.0, width / frame.width)
            kept.append(
                _picture(
                    frame, max(1, round(frame.width * scale)), max(1, round(frame.height * scale))
                )
            )
            if len(kept) > 2 * count:
                kept, stride = kept[::2], stride * 2
    if len(kept) <= count:
        return kept
    return [kept[i * len(kept) // count] for i in range(count)]


def _picture(frame: VideoFrame, width: int, height: int) -> Image.Image:
    """The frame as an RGB image of ``width`` x ``height`` (scaled by FFmpeg's swscale)."""
    convert: Callable[..., Image.Image] = frame.to_image  # untyped in PyAV's stubs
    return convert(width=width, height=height)


@contextmanager
def _pyav_stream(data: bytes) -> Iterator[tuple[InputContainer, VideoStream]]:
    """The clip's container and first video stream; FFmpeg's errors (and a missing PyAV)
    are ``ValueError``."""
    if not pyav_installed():
        raise ValueError("PyAV is not installed")
    try:
        import av
    except ImportError as exc:  # installed, but its FFmpeg libraries do not load
        raise ValueError(f"PyAV does not import ({exc})") from None

    try:
        container = av.open(io.BytesIO(data), "r")
    except av.FFmpegError as exc:
        raise ValueError(f"not a readable video ({exc})") from None
    with container:
        if not container.streams.video:
            raise ValueError("the file has no video stream")
        stream = container.streams.video[0]
        _check_size(stream.codec_context.width, stream.codec_context.height)
        yield container, stream


def _decoded(container: InputContainer, stream: VideoStream) -> Iterator[VideoFrame]:
    """The stream's frames in order; a frame past the size bound or an FFmpeg error is a
    ``ValueError``."""
    import av

    try:
        for frame in container.decode(stream):
            _check_size(frame.width, frame.height)
            yield frame
    except av.FFmpegError as exc:
        raise ValueError(f"the video does not decode ({exc})") from None
