"""The emulators' MP4: a real clip that decodes, frame by frame, to the square it draws."""

from __future__ import annotations

import av
import pytest

from tests.emulators.video import FRAMES, SIZE, SQUARE, clip_bytes, probe, square_left


def test_the_clip_is_an_mp4_with_its_index_before_its_media() -> None:
    data = clip_bytes()
    assert data[4:8] == b"ftyp"
    # +faststart: the moov box (the index a player needs first) precedes the media data
    assert 0 < data.find(b"moov") < data.find(b"mdat")


def test_the_clip_decodes_to_every_frame_with_the_square_moving_right() -> None:
    found = probe(clip_bytes())
    assert found.codec in ("h264", "mpeg4")
    assert (found.size, found.frames) == (SIZE, FRAMES)
    expected = [square_left(i) + (SQUARE - 1) / 2 for i in range(FRAMES)]
    assert found.square_x == pytest.approx(expected, abs=1.0)
    assert found.square_x[-1] - found.square_x[0] > SIZE[0] / 2


def test_the_clip_is_built_once() -> None:
    assert clip_bytes() is clip_bytes()


def test_bytes_that_are_not_a_video_do_not_probe() -> None:
    with pytest.raises(av.error.InvalidDataError):
        probe(b"\x00\x00\x00\x18ftypisom\x00\x00\x02\x00isomiso2\x00\x00\x00\x08mdat")
