"""Deterministic stand-in media for the sandbox provider: pure functions over Pillow.

Everything here is a function of its arguments alone (no clock, no global random state, no
network, no font files), so the same input always gives byte-identical output. Inputs that
come from users (images) are decoded defensively: bad or oversized input raises
``ProviderInputError`` with a message that can be shown to the client. (``data:`` URLs are
decoded by the gateway's one decoder, ``gateway.inline_media``, before they get here.)
"""

from __future__ import annotations

import hashlib
import io
import itertools
import json
import math
import random
import struct

from PIL import Image, ImageChops, ImageDraw, ImageFilter, ImageFont, ImageOps

from gateway.errors import ProviderInputError
from gateway.faults import resource_shortage

__all__ = [
    "MAX_FRAMES",
    "MAX_INPUT_PIXELS",
    "MAX_OUTPUT_PIXELS",
    "MAX_VIDEO_PIXELS",
    "face_swap",
    "frame_count",
    "image_size",
    "render_image",
    "render_video",
    "upscale",
]

#: the most frames ``render_video`` renders; longer clips get a lower frame rate
MAX_FRAMES = 48
#: the most pixels an input image may have (well below Pillow's own bomb threshold)
MAX_INPUT_PIXELS = 4096 * 4096
#: the most pixels an upscale may make: about 130 MB held while it runs (an 8192² result
#: held 335 MB, made from a 17 KB PNG)
MAX_OUTPUT_PIXELS = 4096 * 4096
#: the most pixels of all a video's frames together (one byte each: frames share a palette);
#: a larger frame size gets fewer frames, as a longer clip does past MAX_FRAMES
MAX_VIDEO_PIXELS = 64 * 1024 * 1024
#: formats accepted as input; keeps Pillow's rarer (and riskier) decoders out of reach
INPUT_FORMATS = ("PNG", "JPEG", "WEBP", "GIF", "BMP", "TIFF")
#: zlib level for PNG output: fast, and the sandbox's images compress well anyway
_PNG_COMPRESS_LEVEL = 1

#: radial_gradient is 181 at the middle of each edge: fade to 0 there, not beyond
_GLOW = [max(0, 255 - v * 255 // 181) for v in range(256)]

_Font = ImageFont.FreeTypeFont | ImageFont.ImageFont
_RGB = tuple[int, int, int]


def render_image(
    prompt: str,
    *,
    seed: int,
    width: int,
    height: int,
    negative_prompt: str | None = None,
    index: int = 0,
) -> bytes:
    """A ``width`` x ``height`` PNG drawn from the inputs: gradient, shapes and the prompt."""
    image = _picture(prompt, seed, width, height, negative_prompt, index)
    return _png(image)


def render_flat(
    prompt: str,
    *,
    seed: int,
    width: int,
    height: int,
    negative_prompt: str | None = None,
    index: int = 0,
) -> bytes:
    """A ``width`` x ``height`` PNG of one colour drawn from the inputs: what a load test
    needs (a real, deterministic image of the asked size) for a fraction of the cost."""
    _check_size(width, height)
    rng = random.Random(_digest("flat", prompt, seed, negative_prompt, index))
    return _png(Image.new("RGB", (width, height), _colour(rng, light=rng.random() < 0.5)))


def render_video(
    prompt: str,
    *,
    seed: int,
    width: int,
    height: int,
    duration: int,
    fps: int,
    first_frame: bytes | None = None,
) -> bytes:
    """An animated GIF about ``duration`` seconds long: a ball moving over a still picture.

    At most ``frame_count`` frames are rendered (``MAX_FRAMES``, fewer for large frames):
    when ``duration * fps`` is more, the frame rate is lowered so the clip keeps its length
    (GIF delays are whole hundredths of a second, so frames may differ by 10 ms to add up
    exactly). ``first_frame`` (image bytes), when given, is cropped and resized to fill the
    frame and used as the still.
    """
    _check_size(width, height)
    if duration < 1 or fps < 1:
        raise ProviderInputError("'duration' and 'fps' must be at least 1.")
    frames = frame_count(duration, fps, width, height)
    if first_frame is None:
        still = _picture(prompt, seed, width, height, None, 0)
    else:
        still = ImageOps.fit(_open(first_frame, "first frame").convert("RGB"), (width, height))
    rng = random.Random(_digest("video", prompt, seed, width, height))
    # Quantise once, keeping palette slots for the moving parts, then draw in palette space:
    # no per-frame quantisation, and every frame shares one palette.
    base = still.quantize(colors=254, dither=Image.Dither.NONE)
    palette = (base.getpalette() or [])[: 254 * 3]
    palette += [0] * (254 * 3 - len(palette))
    ball_colour, ring_colour = _colour(rng, light=True), _colour(rng, light=False)
    base.putpalette([*palette, *ball_colour, *ring_colour])
    ball, ring = 254, 255
    radius = max(3, min(width, height) // 10)
    phase = rng.random()
    images = []
    for i in range(frames):
        # Only the ball moves, so each GIF frame stores just the small box it swept.
        t = i / frames
        x = radius + (width - 2 * radius) * (0.5 + 0.5 * _sin(t + phase))
        y = radius + (height - 2 * radius) * (0.5 + 0.5 * _sin(2 * t + phase + 0.25))
        frame = base.copy()
        ImageDraw.Draw(frame).ellipse(
            (x - radius, y - radius, x + radius, y + radius),
            fill=ball,
            outline=ring,
            width=max(1, radius // 6),
        )
        images.append(frame)
    out = io.BytesIO()
    images[0].save(
        out,
        format="GIF",
        save_all=True,
        append_images=images[1:],
        duration=_delays(duration, frames),
        loop=0,
        optimize=False,
    )
    return out.getvalue()


def frame_count(duration: int, fps: int, width: int, height: int) -> int:
    """How many frames ``render_video`` renders: ``duration * fps``, at most ``MAX_FRAMES``
    and ``MAX_VIDEO_PIXELS`` in all, at least one."""
    return max(1, min(duration * fps, MAX_FRAMES, MAX_VIDEO_PIXELS // max(1, width * height)))


def upscale(
    image: bytes,
    *,
    scale_factor: int,
    max_side: int = 8192,
    max_pixels: int = MAX_OUTPUT_PIXELS,
) -> tuple[bytes, int, int]:
    """``image`` made ``scale_factor`` times larger (Lanczos), as ``(png, width, height)``.

    A result over ``max_pixels`` (or ``max_side`` a side) is refused from the image's header,
    before anything is decoded: a small PNG of one colour can ask for gigabytes.
    """
    if scale_factor < 1:
        raise ProviderInputError("'scale_factor' must be at least 1.", param="scale_factor")
    declared = image_size(image)
    if declared is not None and declared[0] * declared[1] <= MAX_INPUT_PIXELS:
        _check_upscale(declared, scale_factor, max_side, max_pixels)  # (larger: _open says)
    source = _workable(_open(image, "image"))
    width, height = _check_upscale(source.size, scale_factor, max_side, max_pixels)
    result = source.resize((width, height), Image.Resampling.LANCZOS)
    return _png(result), width, height


def _check_upscale(
    size: tuple[int, int], factor: int, max_side: int, max_pixels: int
) -> tuple[int, int]:
    width, height = size[0] * factor, size[1] * factor
    if max(width, height) > max_side or width * height > max_pixels:
        raise ProviderInputError(
            f"Invalid 'scale_factor': the {size[0]}x{size[1]} image upscaled {factor} times "
            f"would be {width}x{height} ({width * height} pixels); at most {max_pixels} pixels "
            f"and {max_side} a side are allowed. Use a smaller image or a lower "
            "'scale_factor'.",
            param="scale_factor",
        )
    return width, height


def face_swap(source: bytes, target: bytes) -> tuple[bytes, int, int]:
    """The centre of ``source``, cut as a soft ellipse, pasted on the upper centre of ``target``.

    Returns ``(png, width, height)``, the size of ``target``.
    """
    face = _open(source, "source image")
    canvas = _workable(_open(target, "target image"))
    canvas = canvas.convert("RGBA" if "A" in canvas.mode else "RGB")
    tw, th = canvas.size
    side = min(face.width, face.height)
    cw, ch = max(1, round(side * 0.6)), max(1, round(side * 0.75))
    left, top = (face.width - cw) // 2, (face.height - ch) // 2
    crop = _workable(face).convert(canvas.mode).crop((left, top, left + cw, top + ch))
    rw = max(2, min(tw, round(min(tw, th) * 0.35)))
    rh = max(2, min(th, round(rw * 1.25)))
    patch = crop.resize((rw, rh), Image.Resampling.LANCZOS)
    feather = max(1, rw // 12)
    mask = Image.new("L", (rw, rh), 0)
    ImageDraw.Draw(mask).ellipse((feather, feather, rw - 1 - feather, rh - 1 - feather), fill=255)
    mask = mask.filter(ImageFilter.GaussianBlur(feather / 2))
    x = (tw - rw) // 2
    y = min(th - rh, max(0, round(th * 0.4 - rh / 2)))
    canvas.paste(patch, (x, y), mask)
    return _png(canvas), tw, th


# -- drawing -------------------------------------------------------------------------------


def _picture(
    prompt: str, seed: int, width: int, height: int, negative_prompt: str | None, index: int
) -> Image.Image:
    _check_size(width, height)
    rng = random.Random(_digest("image", prompt, seed, negative_prompt, index))
    # The background is all low frequencies: draw it at 256x256 and stretch it once.
    small = (256, 256)
    first, second = _colour(rng, light=False), _colour(rng, light=True)
    background = Image.composite(
        Image.new("RGB", small, second), Image.new("RGB", small, first), _gradient(rng)
    )
    glow_side = rng.randint(128, 256)  # a soft glow of a third colour somewhere
    glow_mask = Image.radial_gradient("L").point(_GLOW).resize((glow_side, glow_side))
    glow_at = (rng.randrange(-glow_side // 2, 256), rng.randrange(-glow_side // 2, 256))
    background.paste(Image.new("RGB", glow_mask.size, _colour(rng, light=True)), glow_at, glow_mask)
    image = background.resize((width, height), Image.Resampling.BILINEAR)
    draw = ImageDraw.Draw(image, "RGBA")  # RGBA fills blend into the RGB image
    unit = min(width, height)
    for _ in range(rng.randint(4, 8)):
        r = unit * rng.uniform(0.05, 0.2)
        x, y = rng.uniform(0, width), rng.uniform(0, height)
        fill = (*_colour(rng, light=rng.random() < 0.5), rng.randint(90, 200))
        box = (x - r, y - r, x + r, y + r)
        shape = rng.randrange(3)
        if shape == 0:
            draw.ellipse(box, fill=fill)
        elif shape == 1:
            draw.rectangle(box, fill=fill)
        else:
            draw.regular_polygon(
                (x, y, r), rng.randint(3, 6), rotation=rng.uniform(0, 360), fill=fill
            )
    _caption(image, prompt, f"seed {seed} #{index}")
    return image


def _gradient(rng: random.Random) -> Image.Image:
    """A 256x256 linear gradient mask in one of eight directions."""
    vertical = Image.linear_gradient("L")
    horizontal = vertical.transpose(Image.Transpose.ROTATE_90)
    mask = [vertical, horizontal, ImageChops.add(vertical, horizontal, scale=2.0)][rng.randrange(3)]
    if rng.random() < 0.5:
        mask = ImageOps.flip(mask)
    if rng.random() < 0.5:
        mask = ImageOps.mirror(mask)
    return mask


def _caption(image: Image.Image, prompt: str, footer: str) -> None:
    width, height = image.size
    margin = max(4, min(width, height) // 24)
    font = ImageFont.load_default(size=max(10, min(width, height) // 22))
    small = ImageFont.load_default(size=max(8, min(width, height) // 40))
    line_height = _line_height(font)
    max_lines = max(1, (height // 2 - margin) // line_height)
    lines = _wrap(prompt, font, width - 2 * margin, max_lines)
    draw = ImageDraw.Draw(image)
    stroke = max(1, line_height // 14)
    for n, line in enumerate(lines):
        draw.text(
            (margin, margin + n * line_height),
            line,
            font=font,
            fill=(255, 255, 255),
            stroke_width=stroke,
            stroke_fill=(0, 0, 0),
        )
    draw.text(
        (margin, height - margin - _line_height(small)),
        footer,
        font=small,
        fill=(255, 255, 255),
        stroke_width=1,
        stroke_fill=(0, 0, 0),
    )


def _wrap(text: str, font: _Font, max_width: int, max_lines: int) -> list[str]:
    """Greedy word wrap to ``max_width`` pixels; words too long for a line are broken."""
    lines: list[str] = []
    current = ""
    for word in text.split():
        candidate = f"{current} {word}" if current else word
        if font.getlength(candidate) <= max_width:
            current = candidate
            continue
        if current:
            lines.append(current)
        while font.getlength(word) > max_width and len(lines) <= max_lines:
            cut = _fit(word, font, max_width)
            lines.append(word[:cut])
            word = word[cut:]
        current = word
        if len(lines) > max_lines:
            break
    if current:
        lines.append(current)
    if len(lines) > max_lines:
        last = lines[max_lines - 1]
        while last and font.getlength(last + "...") > max_width:
            last = last[:-1]
        lines = [*lines[: max_lines - 1], last + "..."]
    return lines


def _fit(word: str, font: _Font, max_width: int) -> int:
    """The length of the longest prefix of ``word`` that fits, at least 1."""
    lo, hi = 1, len(word)
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if font.getlength(word[:mid]) <= max_width:
            lo = mid
        else:
            hi = mid - 1
    return lo


def _line_height(font: _Font) -> int:
    top, bottom = font.getbbox("Ag")[1::2]
    return max(1, round((bottom - top) * 1.3))


def _colour(rng: random.Random, *, light: bool) -> _RGB:
    low, high = (130, 255) if light else (10, 140)
    return (rng.randint(low, high), rng.randint(low, high), rng.randint(low, high))


def _sin(turns: float) -> float:
    """The sine of ``turns`` full turns."""
    return math.sin(2 * math.pi * turns)


def _digest(*parts: object) -> int:
    blob = json.dumps(parts, ensure_ascii=False, separators=(",", ":")).encode()
    return int.from_bytes(hashlib.sha256(blob).digest(), "big")


def _delays(seconds: int, frames: int) -> list[int]:
    """Frame delays in ms, whole hundredths (as GIF stores them) summing to ``seconds``."""
    total = seconds * 100
    marks = [round(k * total / frames) for k in range(frames + 1)]
    return [10 * (b - a) for a, b in itertools.pairwise(marks)]


def _check_size(width: int, height: int) -> None:
    if width < 1 or height < 1 or width * height > MAX_INPUT_PIXELS:
        raise ProviderInputError(
            f"A {width}x{height} frame is not possible here (at most {MAX_INPUT_PIXELS} pixels)."
        )


# -- decoding and encoding -----------------------------------------------------------------


def image_size(data: bytes) -> tuple[int, int] | None:
    """The width and height an image's header declares (nothing is decoded), or None when
    it is not an image this module reads."""
    try:
        with Image.open(io.BytesIO(data), formats=INPUT_FORMATS) as image:
            return image.size
    except Exception:  # anything unreadable (a bomb warning too): _open says what is wrong
        return None


def _open(data: bytes, what: str) -> Image.Image:
    """Decode the first frame of an image, refusing non-images and decompression bombs."""
    try:
        image = Image.open(io.BytesIO(data), formats=INPUT_FORMATS)
        if image.width * image.height > MAX_INPUT_PIXELS:
            raise ProviderInputError(
                f"The {what} is {image.width}x{image.height}; at most {MAX_INPUT_PIXELS} "
                "pixels are allowed."
            )
        image.load()
        return ImageOps.exif_transpose(image)
    except ProviderInputError:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        # the warning is only raised when warnings are errors; otherwise the check above wins
        raise ProviderInputError(f"The {what} has too many pixels.") from None
    except (OSError, ValueError, EOFError, SyntaxError, struct.error, IndexError) as exc:
        if resource_shortage(exc):  # the machine, not the image: the job is retried
            raise
        raise ProviderInputError(
            f"The {what} could not be decoded; send a PNG, JPEG, WebP, GIF, BMP or TIFF file."
        ) from None


def _workable(image: Image.Image) -> Image.Image:
    """The image in a mode every filter handles: RGB, or RGBA when it has transparency."""
    if image.mode in ("RGB", "RGBA"):
        return image
    has_alpha = "A" in image.getbands() or "transparency" in image.info
    try:
        return image.convert("RGBA" if has_alpha else "RGB")
    except ValueError:
        raise ProviderInputError(f"Images in mode {image.mode} are not supported.") from None


def _png(image: Image.Image) -> bytes:
    """PNG bytes; Pillow writes no time or text chunks, so equal pixels give equal bytes."""
    out = io.BytesIO()
    image.save(out, format="PNG", compress_level=_PNG_COMPRESS_LEVEL)
    return out.getvalue()
