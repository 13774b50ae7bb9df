"""The sandbox's image-to-image and text targets (the Tasks API's kinds): pure Pillow.

Like ``sandbox_media``, everything is a function of its arguments alone, so equal input gives
byte-identical output. ``image_adjust`` (crop / pad / scale), ``refine`` (a Lanczos resize and
an unsharp mask), ``face_enhance``, ``detail_enhance``, ``background_fix`` and
``background_removal`` are real, if simple, image operations; ``edit`` and ``fal_app`` draw
placeholders from their input, and ``llm`` is an echo, not a language model.
"""

from __future__ import annotations

import json
import random
from collections.abc import Awaitable, Callable, Sequence
from functools import partial
from typing import Any, Protocol, TypeVar

from PIL import Image, ImageChops, ImageFilter, ImageOps, ImageStat

from gateway.errors import ProviderInputError
from providers.base import Output
from providers.sandbox_media import (
    MAX_INPUT_PIXELS,
    _caption,
    _colour,
    _digest,
    _open,
    _png,
    _workable,
    render_image,
)

__all__ = ["TARGETS", "adjust", "remove_background", "render"]

TARGETS = (
    "edit",
    "refine",
    "detail_enhance",
    "background_fix",
    "face_enhance",
    "background_removal",
    "image_adjust",
    "llm",
    "fal_app",
)
#: reads the bytes behind an input URL (``SandboxProvider._input``)
Fetch = Callable[[object, str], Awaitable[bytes]]
Rendered = tuple[bytes, int, int]
T = TypeVar("T")


class Heavy(Protocol):
    """Runs a render that reads ``images`` off the event loop, within the sandbox's memory
    budget (``SandboxProvider``: a thread, once the render's estimated peak is free)."""

    def __call__(self, images: Sequence[bytes], work: Callable[[], T], /) -> Awaitable[T]: ...


_RESAMPLING = {
    "lanczos": Image.Resampling.LANCZOS,
    "bicubic": Image.Resampling.BICUBIC,
    "bilinear": Image.Resampling.BILINEAR,
    "nearest": Image.Resampling.NEAREST,
    "box": Image.Resampling.BOX,
    "hamming": Image.Resampling.HAMMING,
}
#: where a crop keeps its box: fractions of the slack on each axis
_POSITIONS = {
    "center": (0.5, 0.5),
    "top": (0.5, 0.0),
    "bottom": (0.5, 1.0),
    "left": (0.0, 0.5),
    "right": (1.0, 0.5),
    "top_left": (0.0, 0.0),
    "top_right": (1.0, 0.0),
    "bottom_left": (0.0, 1.0),
    "bottom_right": (1.0, 1.0),
}
AUTO_PAD_ABOVE = 0.05  # mode "auto": ratios more than 5% apart are padded, closer ones cropped
BACKGROUND_DISTANCE = 40  # background_removal: how far from the corner colour is background


async def render(
    target: str, job_input: dict[str, Any], fetch: Fetch, heavy: Heavy
) -> tuple[tuple[Output, ...], int | None]:
    """Run ``target`` on ``job_input``; input images are read with ``fetch``, and the
    image work runs through ``heavy``."""
    if target == "llm":
        text = echo(
            str(job_input.get("prompt") or ""),
            job_input.get("system_prompt"),
            len(job_input.get("image_urls") or []),
        )
        return (Output("text/plain", data=text.encode()),), None
    if target == "fal_app":
        params = dict(job_input)
        png, width, height = await heavy([], partial(fal_app_placeholder, params))
        return (Output("image/png", data=png, width=width, height=height),), None
    if target == "background_removal":
        urls = job_input.get("image_urls") or []
        images = [await fetch(url, f"image_urls[{i}]") for i, url in enumerate(urls)]
        done = await heavy(images, lambda: [remove_background(i) for i in images])
        return tuple(Output("image/png", data=p, width=w, height=h) for p, w, h in done), None
    image = await fetch(job_input.get("image_url"), "image_url")
    seed = job_input.get("seed")
    if target == "edit":
        refs = [
            await fetch(url, f"reference_image_urls[{i}]")
            for i, url in enumerate(job_input.get("reference_image_urls") or [])
        ]
        mask_url = job_input.get("mask_url")
        mask = None if mask_url is None else await fetch(mask_url, "mask_url")
        inputs = [image, *refs, *([] if mask is None else [mask])]
        result = await heavy(inputs, partial(edit, image, refs, job_input, int(seed or 0), mask))
    elif target == "refine":
        result = await heavy([image], partial(refine, image, job_input))
    elif target == "detail_enhance":
        reference = await fetch(job_input.get("reference_image_url"), "reference_image_url")
        result = await heavy([image, reference], partial(detail_enhance, image, reference))
    elif target == "background_fix":
        palette = await fetch(job_input.get("palette_image_url"), "palette_image_url")
        result = await heavy([image, palette], partial(background_fix, image, palette, job_input))
    elif target == "face_enhance":
        result = await heavy([image], partial(face_enhance, image))
    else:
        result = await heavy([image], partial(adjust, image, job_input))
    png, width, height = result
    output = Output("image/png", data=png, width=width, height=height)
    return (output,), seed if isinstance(seed, int) else None


# -- the operations -----------------------------------------------------------------------


def echo(prompt: str, system_prompt: object, images: int) -> str:
    lines = ["[sandbox LLM: a deterministic echo for development and testing, not a model]"]
    if isinstance(system_prompt, str) and system_prompt:
        lines.append(f"system: {system_prompt}")
    if images:
        lines.append(f"images: {images}")
    lines.append(f"prompt: {prompt}")
    return "\n".join(lines)


def fal_app_placeholder(params: dict[str, Any]) -> Rendered:
    """A placeholder image drawn from a fal app's parameters (their prompt, seed and size)."""
    prompt = params.get("prompt")
    if not isinstance(prompt, str) or not prompt:
        prompt = "fal app parameters: " + json.dumps(params, sort_keys=True, default=str)[:300]
    seed = params.get("seed")
    size = params.get("image_size")
    width, height = (
        (size.get("width"), size.get("height"))
        if isinstance(size, dict)
        else (
            params.get("width"),
            params.get("height"),
        )
    )
    width, height = _side(width), _side(height)
    png = render_image(
        prompt, seed=seed if isinstance(seed, int) else 0, width=width, height=height
    )
    return png, width, height


def edit(
    image: bytes,
    references: list[bytes],
    job_input: dict[str, Any],
    seed: int,
    mask: bytes | None = None,
) -> Rendered:
    """The image (resized as asked) tinted by the prompt, with the references as thumbnails.

    With a ``mask`` (OpenAI's convention: its fully transparent pixels are the ones to edit),
    every other pixel keeps the input's value."""
    prompt = str(job_input.get("prompt") or "")
    base = _workable(_open(image, "image")).convert("RGB")
    size = _scaled(base.size, job_input.get("width"), job_input.get("height"))
    if size != base.size:
        base = ImageOps.fit(base, size, Image.Resampling.LANCZOS)
    rng = random.Random(_digest("edit", prompt, seed))
    out = Image.blend(base, Image.new("RGB", base.size, _colour(rng, light=True)), 0.25)
    side = max(8, min(out.size) // 5)
    margin = max(2, side // 8)
    for i, data in enumerate(references):
        thumb = ImageOps.fit(_open(data, "reference image").convert("RGB"), (side, side))
        out.paste(thumb, (out.width - (i + 1) * (side + margin), out.height - side - margin))
    _caption(out, prompt, f"edit, seed {seed}")
    if mask is not None:
        keep = _open(mask, "mask").convert("RGBA").getchannel("A")
        if keep.size != out.size:
            keep = keep.resize(out.size, Image.Resampling.NEAREST)
        keep = keep.point(lambda a: 255 if a else 0)
        out = Image.composite(base, out, keep)
    return _png(out), out.width, out.height


def refine(image: bytes, job_input: dict[str, Any], max_side: int = 8192) -> Rendered:
    """A Lanczos resize (to width x height, or by scale_factor) and an unsharp mask."""
    source = _workable(_open(image, "image"))
    width, height = job_input.get("width"), job_input.get("height")
    factor = job_input.get("scale_factor")
    if isinstance(width, int) and isinstance(height, int):
        size = (width, height)
    elif isinstance(factor, int | float):
        size = (max(1, round(source.width * factor)), max(1, round(source.height * factor)))
    else:
        size = source.size
    if max(size) > max_side or size[0] * size[1] > MAX_INPUT_PIXELS:
        raise ProviderInputError(
            f"The refined image would be {size[0]}x{size[1]}; at most {max_side} pixels a side "
            f"and {MAX_INPUT_PIXELS} in all are allowed.",
            param="scale_factor",
        )
    out = source.resize(size, Image.Resampling.LANCZOS) if size != source.size else source
    denoise = job_input.get("denoise")
    strength = 60 + round(100 * (denoise if isinstance(denoise, int | float) else 0.3))
    out = out.filter(ImageFilter.UnsharpMask(radius=2, percent=strength, threshold=2))
    if job_input.get("face_detail"):
        out = out.filter(ImageFilter.DETAIL)
    return _png(out), out.width, out.height


def detail_enhance(image: bytes, reference: bytes) -> Rendered:
    """Sharpened details, with a tenth of the reference blended in."""
    base = _workable(_open(image, "image")).convert("RGB")
    ref = ImageOps.fit(_open(reference, "reference image").convert("RGB"), base.size)
    sharp = base.filter(ImageFilter.DETAIL).filter(ImageFilter.UnsharpMask(2, 120, 3))
    out = Image.blend(sharp, ref, 0.1)
    return _png(out), out.width, out.height


def face_enhance(image: bytes) -> Rendered:
    """Smoothed, then sharpened: a stand-in for face restoration."""
    base = _workable(_open(image, "image"))
    out = base.filter(ImageFilter.SMOOTH_MORE).filter(ImageFilter.UnsharpMask(1.5, 80, 2))
    return _png(out), out.width, out.height


def background_fix(image: bytes, palette: bytes, job_input: dict[str, Any]) -> Rendered:
    """Shift the light parts of the image towards the palette's mean colour.

    Below ``shadow_threshold`` (brightness) nothing moves, above ``light_threshold`` pixels
    move fully, linearly in between; the mask grows by ``mask_expansion`` of the longer
    side and is blurred by ``edge_blur_sigma``.
    """
    base = _workable(_open(image, "image")).convert("RGB")
    mean = ImageStat.Stat(_open(palette, "palette image").convert("RGB")).mean
    target = (round(mean[0]), round(mean[1]), round(mean[2]))
    shadow = int(job_input.get("shadow_threshold", 150))
    light = int(job_input.get("light_threshold", 220))
    span = max(1, light - shadow)
    weight = base.convert("L").point(
        [0 if v < shadow else 255 if v >= light else (v - shadow) * 255 // span for v in range(256)]
    )
    grow = min(8, round(float(job_input.get("mask_expansion", 0.0)) * max(base.size)))
    if grow > 0:
        weight = weight.filter(ImageFilter.MaxFilter(2 * grow + 1))
    sigma = float(job_input.get("edge_blur_sigma", 0.0))
    if sigma > 0:
        weight = weight.filter(ImageFilter.GaussianBlur(min(sigma, max(base.size) / 8)))
    shifted = Image.blend(base, Image.new("RGB", base.size, target), 0.6)
    out = Image.composite(shifted, base, weight)
    return _png(out), out.width, out.height


def remove_background(image: bytes) -> Rendered:
    """An RGBA cut-out: pixels close to the mean corner colour become transparent."""
    rgb = _workable(_open(image, "image")).convert("RGB")
    w, h = rgb.size
    corners = Image.new("RGB", (2, 2))
    for i, xy in enumerate(((0, 0), (w - 1, 0), (0, h - 1), (w - 1, h - 1))):
        corners.paste(rgb.crop((xy[0], xy[1], xy[0] + 1, xy[1] + 1)), (i % 2, i // 2))
    mean = ImageStat.Stat(corners).mean
    colour = (round(mean[0]), round(mean[1]), round(mean[2]))
    distance = ImageChops.difference(rgb, Image.new("RGB", rgb.size, colour)).convert("L")
    alpha = distance.point([0 if v <= BACKGROUND_DISTANCE else 255 for v in range(256)])
    out = rgb.convert("RGBA")
    out.putalpha(alpha)
    return _png(out), w, h


def adjust(image: bytes, job_input: dict[str, Any]) -> Rendered:
    """Crop, pad or scale ``image`` to an aspect ratio or a size (the image_adjust kind)."""
    margins = ("margin_top", "margin_bottom", "margin_left", "margin_right")
    if any(job_input.get(k) is not None for k in margins) or job_input.get("reference_image_url"):
        raise ProviderInputError(
            "Margins and reference images need subject detection, which the built-in image "
            "adjuster does not do; leave them out or use a model that detects subjects.",
            param="margin_top",
        )
    source = _workable(_open(image, "image"))
    width, height = source.size
    target_w, target_h = job_input.get("target_width"), job_input.get("target_height")
    size = (target_w, target_h) if isinstance(target_w, int) and isinstance(target_h, int) else None
    ratio = size[0] / size[1] if size else float(job_input["aspect_ratio"])
    if size and size[0] * size[1] > MAX_INPUT_PIXELS:
        raise ProviderInputError(f"At most {MAX_INPUT_PIXELS} pixels are allowed.")
    difference = abs(width / height - ratio) / ratio
    tolerance = float(job_input.get("tolerance") or 0.0)
    if difference <= tolerance and (size is None or size == source.size):
        return _png(source), width, height
    mode = job_input.get("mode", "auto")
    if mode == "auto":
        mode = "pad" if difference > AUTO_PAD_ABOVE else "crop"
    resample = _RESAMPLING[str(job_input.get("resampling", "lanczos"))]
    if mode == "scale":
        out = _scale(source, ratio, size, str(job_input.get("scaling_proportions")), resample)
    else:
        if mode == "crop":
            fx, fy = _POSITIONS[str(job_input.get("cropping_position", "center"))]
            out = _crop_to_ratio(source, ratio, fx, fy)
        else:
            out = _pad_to_ratio(source, ratio)
        if size is not None and out.size != size:
            out = out.resize(size, resample)
    return _png(out), out.width, out.height


# -- helpers ------------------------------------------------------------------------------


def _side(value: object, default: int = 512) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        return default
    return min(1024, max(64, value))


def _scaled(size: tuple[int, int], width: object, height: object) -> tuple[int, int]:
    """``size`` changed to the width and/or height asked for (one alone keeps the ratio)."""
    w, h = size
    if isinstance(width, int) and isinstance(height, int):
        return width, height
    if isinstance(width, int):
        return width, max(1, round(h * width / w))
    if isinstance(height, int):
        return max(1, round(w * height / h)), height
    return size


def _crop_to_ratio(image: Image.Image, ratio: float, fx: float, fy: float) -> Image.Image:
    w, h = image.size
    cw, ch = (min(w, round(h * ratio)), h) if w / h > ratio else (w, min(h, round(w / ratio)))
    left, top = round((w - cw) * fx), round((h - ch) * fy)
    return image.crop((left, top, left + cw, top + ch))


def _pad_to_ratio(image: Image.Image, ratio: float) -> Image.Image:
    w, h = image.size
    size = (round(h * ratio), h) if w / h < ratio else (w, round(w / ratio))
    return _canvas(image, size)


def _canvas(image: Image.Image, size: tuple[int, int]) -> Image.Image:
    """``image`` centred on a canvas of ``size`` (cropped where larger, padded where smaller):
    white padding, or transparent for images with alpha."""
    if size[0] * size[1] > MAX_INPUT_PIXELS:
        raise ProviderInputError(f"The adjusted image would have over {MAX_INPUT_PIXELS} pixels.")
    fill = (0, 0, 0, 0) if image.mode == "RGBA" else (255, 255, 255)
    canvas = Image.new(image.mode, size, fill)
    canvas.paste(image, ((size[0] - image.width) // 2, (size[1] - image.height) // 2))
    return canvas


def _scale(
    image: Image.Image,
    ratio: float,
    size: tuple[int, int] | None,
    proportions: str,
    resample: Image.Resampling,
) -> Image.Image:
    """Match one side exactly (``proportions``), keep the image's own ratio, then crop or pad
    the other side to the target."""
    w, h = image.size
    if size is None:
        size = (round(h * ratio), h) if proportions == "height" else (w, round(w / ratio))
    factor = size[1] / h if proportions == "height" else size[0] / w
    scaled = (max(1, round(w * factor)), max(1, round(h * factor)))
    if scaled[0] * scaled[1] > MAX_INPUT_PIXELS:
        raise ProviderInputError(f"The scaled image would have over {MAX_INPUT_PIXELS} pixels.")
    resized = image.resize(scaled, resample) if scaled != image.size else image
    return _canvas(resized, size)
