"""Frames read from stored videos: Pillow for GIF/WebP, PyAV for MP4 (the ``video`` extra),
with its absence, undecodable bytes and oversized frames all a ``ValueError`` (the API's 400).
The MP4 is the emulators' clip: a white square crossing a 64x64 frame in 12 frames."""

from __future__ import annotations

import io
import sys

import pytest
from PIL import Image

from gateway.api import openai_video_frames as vf
from tests.emulators.video import FRAMES, SIZE, SQUARE, clip_bytes, square_left

MP4 = "video/mp4"


def square_x(picture: Image.Image) -> float:
    """The centre x of the picture's bright pixels, in the 64-wide clip's coordinates."""
    grey = picture.convert("L")
    xs = [x for y in range(grey.height) for x in range(grey.width) if grey.getpixel((x, y)) > 200]  # type: ignore[operator]
    return sum(xs) / len(xs) * SIZE[0] / grey.width


def centre(index: int) -> float:
    return square_left(index) + (SQUARE - 1) / 2


def gif(count: int) -> bytes:
    pictures = [Image.new("RGB", (40, 20), (i * 30, 0, 0)) for i in range(count)]
    out = io.BytesIO()
    pictures[0].save(out, "GIF", save_all=True, append_images=pictures[1:], duration=50)
    return out.getvalue()


@pytest.fixture
def without_pyav(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(vf, "pyav_installed", lambda: False)


def test_what_is_drawable_depends_on_pyav_for_mp4_only(monkeypatch: pytest.MonkeyPatch) -> None:
    assert vf.pyav_installed()  # the dev extra has it
    assert vf.drawable(MP4) and vf.drawable("video/webm") and vf.drawable("image/gif")
    assert not vf.drawable("application/octet-stream")
    monkeypatch.setattr(vf, "pyav_installed", lambda: False)
    assert not vf.drawable(MP4) and not vf.drawable("video/webm")
    assert vf.drawable("image/gif") and vf.drawable("image/webp")


def test_the_first_frame_of_an_mp4_is_its_first_picture_at_full_size() -> None:
    first = vf.first_frame(clip_bytes(), MP4)
    assert first.mode == "RGB" and first.size == SIZE
    assert square_x(first) == pytest.approx(centre(0), abs=1.0)


def test_spread_frames_of_an_mp4_are_even_and_in_order() -> None:
    every = vf.spread_frames(clip_bytes(), MP4, count=16, width=160)
    assert len(every) == FRAMES and {f.size for f in every} == {SIZE}
    assert [square_x(f) for f in every] == pytest.approx(
        [centre(i) for i in range(FRAMES)], abs=1.0
    )
    four = vf.spread_frames(clip_bytes(), MP4, count=4, width=160)
    xs = [square_x(f) for f in four]
    assert len(four) == 4 and xs == sorted(xs)
    assert xs[0] == pytest.approx(centre(0), abs=1.0) and xs[-1] > SIZE[0] / 2


def test_spread_frames_are_scaled_down_to_the_width() -> None:
    frames = vf.spread_frames(clip_bytes(), MP4, count=3, width=32)
    assert {f.size for f in frames} == {(32, 32)}
    gif_frames = vf.spread_frames(gif(5), "image/gif", count=16, width=20)
    assert len(gif_frames) == 5 and {f.size for f in gif_frames} == {(20, 10)}


def test_decoding_stops_at_the_frame_bound(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(vf, "MAX_DECODED_FRAMES", 6)
    frames = vf.spread_frames(clip_bytes(), MP4, count=16, width=160)
    assert len(frames) == 6 and square_x(frames[-1]) == pytest.approx(centre(5), abs=1.0)


def test_an_oversized_frame_is_refused_before_decoding(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(vf, "MAX_FRAME_PIXELS", SIZE[0] * SIZE[1] - 1)
    with pytest.raises(ValueError, match="frame too large"):
        vf.first_frame(clip_bytes(), MP4)
    monkeypatch.setattr(vf, "MAX_FRAME_PIXELS", 40 * 20 - 1)
    with pytest.raises(ValueError, match="frame too large"):
        vf.spread_frames(gif(2), "image/gif", count=2, width=160)


@pytest.mark.parametrize(
    "data",
    [
        b"\x00\x00\x00\x18ftypisom\x00\x00\x02\x00isomiso2\x00\x00\x00\x08mdat",  # no moov
        b"not a video at all",
        clip_bytes()[: len(clip_bytes()) // 2],  # cut short
    ],
)
def test_bytes_that_do_not_decode_are_a_value_error(data: bytes) -> None:
    with pytest.raises(ValueError):
        vf.first_frame(data, MP4)
    with pytest.raises(ValueError):
        vf.spread_frames(data, MP4, count=4, width=160)


@pytest.mark.usefixtures("without_pyav")
def test_without_pyav_an_mp4_is_a_value_error_not_an_import_error() -> None:
    with pytest.raises(ValueError, match="PyAV is not installed"):
        vf.first_frame(clip_bytes(), MP4)


def test_a_pyav_that_does_not_import_is_a_value_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "av", None)  # `import av` raises ImportError
    with pytest.raises(ValueError, match="PyAV does not import"):
        vf.spread_frames(clip_bytes(), MP4, count=4, width=160)
