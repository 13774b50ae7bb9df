"""The MP4 an emulated video job makes: a real, tiny, playable clip, built with PyAV.

``FRAMES`` frames of ``SIZE`` at ``FPS``: a white square crossing a dark background from left
to right, so its frames differ and a decoder's output can be checked for motion (``probe``).
H.264 (``libx264``, what fal's and Replicate's video models send, and what browsers play) when
the FFmpeg bundled with PyAV has it, else FFmpeg's own MPEG-4 part 2 encoder; ``+faststart``
puts the ``moov`` box first, as the providers' files have it.

PyAV (``av``, the dev extra) is imported here only: ``media.py`` imports this module when
an emulator first serves a video, so an emulator that never makes one does not need it.
The clip is built once per process and cached.
"""

from __future__ import annotations

import io
import tempfile
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import av
from PIL import Image, ImageDraw

SIZE = (64, 64)
FRAMES = 12
FPS = 12
SQUARE = 16
#: the encoders tried in order; the first one the bundled FFmpeg has is used
ENCODERS = ("libx264", "mpeg4")


def _encoder() -> str:
    for name in ENCODERS:
        try:
            av.codec.Codec(name, "w")
        except (av.codec.codec.UnknownCodecError, ValueError):
            continue
        return name
    raise RuntimeError(f"PyAV's FFmpeg has none of the encoders {', '.join(ENCODERS)}")


def square_left(index: int) -> int:
    """The x of the square's left edge in frame ``index``: it moves right at a steady pace."""
    return index * (SIZE[0] - SQUARE) // (FRAMES - 1)


def _frame(index: int) -> Image.Image:
    picture = Image.new("RGB", SIZE, (20, 30, 90))
    left, top = square_left(index), (SIZE[1] - SQUARE) // 2
    ImageDraw.Draw(picture).rectangle(
        (left, top, left + SQUARE - 1, top + SQUARE - 1), fill=(255, 255, 255)
    )
    return picture


@lru_cache(maxsize=1)
def clip_bytes() -> bytes:
    """The clip's MP4 bytes (built on the first call, then the same bytes every time)."""
    # +faststart rewrites the file once written, which FFmpeg does on a path, not a stream
    with tempfile.TemporaryDirectory(prefix="emulator-clip-") as folder:
        path = Path(folder) / "clip.mp4"
        _encode(path)
        return path.read_bytes()


def _encode(path: Path) -> None:
    with av.open(str(path), "w", format="mp4", options={"movflags": "+faststart"}) as container:
        stream = container.add_stream(_encoder(), rate=FPS)
        stream.width, stream.height = SIZE
        stream.pix_fmt = "yuv420p"
        stream.codec_context.thread_count = 1  # the same bytes on every machine's core count
        for index in range(FRAMES):
            frame = av.VideoFrame.from_image(_frame(index))
            container.mux(stream.encode(frame))
        container.mux(stream.encode(None))


@dataclass(frozen=True)
class Probe:
    """What decoding a clip found."""

    codec: str
    size: tuple[int, int]
    frames: int
    #: per decoded frame, the x of the centre of its brightest pixels (the square)
    square_x: tuple[float, ...]


def probe(data: bytes) -> Probe:
    """Decode every frame of ``data`` (a container PyAV reads) and report what it holds."""
    xs: list[float] = []
    size = (0, 0)
    with av.open(io.BytesIO(data), "r") as container:
        stream = container.streams.video[0]
        codec = stream.codec_context.name
        for frame in container.decode(stream):
            picture = frame.to_image().convert("L")
            size = picture.size
            bright = [
                x
                for y in range(picture.height)
                for x in range(picture.width)
                if picture.getpixel((x, y)) > 200  # type: ignore[operator]
            ]
            xs.append(sum(bright) / len(bright) if bright else -1.0)
    return Probe(codec=codec, size=size, frames=len(xs), square_x=tuple(xs))
