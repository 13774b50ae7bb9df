from __future__ import annotations

import io
import struct
import zlib

import pytest
from PIL import Image

from gateway.errors import ProviderInputError
from providers import sandbox_media as media


def _png(
    width: int, height: int, colour: tuple[int, ...] = (200, 30, 30), mode: str = "RGB"
) -> bytes:
    out = io.BytesIO()
    Image.new(mode, (width, height), colour).save(out, format="PNG")
    return out.getvalue()


def _png_header_only(width: int, height: int) -> bytes:
    """A PNG that claims ``width`` x ``height`` but holds (almost) no data."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        crc = struct.pack(">I", zlib.crc32(kind + data))
        return struct.pack(">I", len(data)) + kind + data + crc

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", ihdr)
        + chunk(b"IDAT", zlib.compress(b""))
        + chunk(b"IEND", b"")
    )


def _open(data: bytes) -> Image.Image:
    image = Image.open(io.BytesIO(data))
    image.load()
    return image


def _png_chunk_types(data: bytes) -> list[bytes]:
    kinds, pos = [], 8
    while pos < len(data):
        (length,) = struct.unpack(">I", data[pos : pos + 4])
        kinds.append(data[pos + 4 : pos + 8])
        pos += 12 + length
    return kinds


# -- render_image --------------------------------------------------------------------------


@pytest.mark.parametrize(("width", "height"), [(64, 64), (320, 200), (200, 640), (1024, 1024)])
def test_render_image_is_a_png_of_exactly_the_requested_size(width: int, height: int) -> None:
    image = _open(media.render_image("a red fox", seed=1, width=width, height=height))
    assert image.format == "PNG"
    assert image.size == (width, height)


def test_render_image_gives_identical_bytes_for_identical_input() -> None:
    args = {"seed": 42, "width": 256, "height": 192, "negative_prompt": "blur", "index": 1}
    assert media.render_image("a red fox", **args) == media.render_image("a red fox", **args)


def test_render_image_differs_by_seed_index_prompt_and_negative_prompt() -> None:
    base = {"seed": 1, "width": 128, "height": 128}
    outputs = {
        media.render_image("a red fox", **base),
        media.render_image("a red fox", **{**base, "seed": 2}),
        media.render_image("a red fox", **base, index=1),
        media.render_image("a blue fox", **base),
        media.render_image("a red fox", **base, negative_prompt="blur"),
    }
    assert len(outputs) == 5


def test_render_image_writes_no_time_or_text_chunks() -> None:
    data = media.render_image("a red fox", seed=1, width=64, height=64)
    assert _png_chunk_types(data) == [b"IHDR", b"IDAT", b"IEND"]


def test_render_image_draws_long_and_non_latin_prompts() -> None:
    prompt = "一只狐狸 🦊 " + "supercalifragilistic" * 50 + " word" * 700
    image = _open(media.render_image(prompt[:4000], seed=3, width=64, height=96))
    assert image.size == (64, 96)


def test_render_image_rejects_impossible_sizes() -> None:
    with pytest.raises(ProviderInputError):
        media.render_image("x", seed=0, width=0, height=64)


# -- render_video --------------------------------------------------------------------------


def _frames(data: bytes) -> tuple[Image.Image, list[int]]:
    image = Image.open(io.BytesIO(data))
    durations = []
    for i in range(image.n_frames):
        image.seek(i)
        durations.append(image.info["duration"])
    image.seek(0)
    return image, durations


def test_render_flat_is_one_deterministic_colour_of_the_requested_size() -> None:
    png = media.render_flat("a lighthouse", seed=3, width=96, height=40)
    image = Image.open(io.BytesIO(png))

    assert image.format == "PNG" and image.size == (96, 40)
    assert len(image.getcolors() or []) == 1  # one colour: a load test's cheap stand-in
    assert media.render_flat("a lighthouse", seed=3, width=96, height=40) == png
    assert media.render_flat("a lighthouse", seed=4, width=96, height=40) != png
    with pytest.raises(ProviderInputError):
        media.render_flat("x", seed=0, width=0, height=10)


def test_render_video_is_an_animated_gif_of_the_requested_size_and_length() -> None:
    data = media.render_video("a red fox", seed=1, width=160, height=120, duration=2, fps=8)
    image, durations = _frames(data)
    assert image.format == "GIF"
    assert image.size == (160, 120)
    assert image.is_animated
    assert image.n_frames == 16
    assert sum(durations) == 2000


def test_render_video_caps_frames_and_keeps_the_duration() -> None:
    data = media.render_video("a red fox", seed=1, width=96, height=96, duration=4, fps=60)
    image, durations = _frames(data)
    assert 1 < image.n_frames <= media.MAX_FRAMES
    assert sum(durations) == 4000


def test_render_video_gives_identical_bytes_for_identical_input() -> None:
    args = {"seed": 5, "width": 96, "height": 64, "duration": 1, "fps": 6}
    assert media.render_video("fox", **args) == media.render_video("fox", **args)
    assert media.render_video("fox", **args) != media.render_video("fox", **{**args, "seed": 6})


def test_render_video_starts_from_the_first_frame() -> None:
    data = media.render_video(
        "fox", seed=1, width=128, height=128, duration=1, fps=4, first_frame=_png(40, 20)
    )
    first = Image.open(io.BytesIO(data)).convert("RGB")
    colours = first.getcolors(128 * 128)
    assert colours is not None
    _, most_common = max(colours)
    assert most_common == (200, 30, 30)


def test_render_video_rejects_a_first_frame_that_is_not_an_image() -> None:
    with pytest.raises(ProviderInputError):
        media.render_video(
            "fox", seed=1, width=64, height=64, duration=1, fps=2, first_frame=b"nope"
        )


# -- upscale -------------------------------------------------------------------------------


def test_upscale_returns_a_png_scale_factor_times_larger() -> None:
    data, width, height = media.upscale(_png(30, 20), scale_factor=3)
    image = _open(data)
    assert (width, height) == (90, 60) == image.size
    assert image.format == "PNG"
    assert image.getpixel((45, 30)) == (200, 30, 30)


def test_upscale_keeps_transparency() -> None:
    data, _, _ = media.upscale(_png(8, 8, (0, 0, 255, 0), mode="RGBA"), scale_factor=2)
    assert _open(data).mode == "RGBA"


def test_upscale_rejects_bytes_that_are_not_an_image() -> None:
    with pytest.raises(ProviderInputError, match="could not be decoded"):
        media.upscale(b"<html>not an image</html>", scale_factor=2)


def test_upscale_rejects_a_truncated_image() -> None:
    with pytest.raises(ProviderInputError):
        media.upscale(_png(300, 300)[:-40], scale_factor=2)


@pytest.mark.parametrize(
    "side",
    [
        5_000,  # over our own limit, under Pillow's
        10_000,  # in Pillow's warning band
        100_000,  # over Pillow's hard limit
    ],
)
def test_upscale_rejects_decompression_bombs(side: int) -> None:
    with pytest.raises(ProviderInputError, match="pixels"):
        media.upscale(_png_header_only(side, side), scale_factor=1)


def test_upscale_rejects_output_larger_than_max_side() -> None:
    with pytest.raises(ProviderInputError, match="and 100 a side") as info:
        media.upscale(_png(60, 40), scale_factor=2, max_side=100)
    assert info.value.param == "scale_factor"


# -- face_swap -----------------------------------------------------------------------------


def test_face_swap_returns_a_png_the_size_of_the_target() -> None:
    source = _png(300, 400, (250, 250, 250))
    target = _png(200, 120, (10, 10, 10))
    data, width, height = media.face_swap(source, target)
    image = _open(data)
    assert (width, height) == (200, 120) == image.size
    assert image.getpixel((100, 48))[0] > 200  # the face landed in the upper centre
    assert image.getpixel((5, 115)) == (10, 10, 10)  # the corners are untouched


def test_face_swap_is_deterministic() -> None:
    source = media.render_image("face", seed=1, width=96, height=128)
    target = media.render_image("scene", seed=2, width=160, height=160)
    assert media.face_swap(source, target) == media.face_swap(source, target)


def test_face_swap_names_the_input_that_is_not_an_image() -> None:
    with pytest.raises(ProviderInputError, match="target image"):
        media.face_swap(_png(10, 10), b"garbage")
