"""The kinds of job: what each one takes as input (with bounds and defaults) and returns.

A kind owns its canonical input schema. Faces translate their wire dialect into it; providers
translate it into their own targets' fields. A catalog model can tighten the bounds
(``min_<field>`` / ``max_<field>``) and change the defaults, never widen them.
"""

from __future__ import annotations

import random
import secrets
from dataclasses import dataclass
from functools import cached_property
from typing import Annotated, Any, ClassVar, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
)

from gateway.errors import InvalidRequest
from gateway.inline_media import DEFAULT_MAX_INPUT_BYTES, decode_data_url, is_data_url

MAX_SEED = 2**32 - 1
_seeds = random.Random(secrets.randbits(64))
#: an http(s) URL's longest form; a data: URL is bounded by the size of what it decodes to
#: (BACKSERV_MAX_INPUT_BYTES), checked by ``Kind.validate``
MAX_URL_LENGTH = 8 * 1024 * 1024

Prompt = Annotated[str, Field(min_length=1, max_length=4000)]
OptionalText = Annotated[str | None, Field(default=None, max_length=4000)]
Seed = Annotated[int | None, Field(default=None, ge=0, le=MAX_SEED)]


def _check_url(value: str) -> str:
    scheme = value.split(":", 1)[0].lower() if ":" in value else ""
    if scheme not in ("http", "https", "data"):
        raise ValueError("must be an http(s) URL or a data: URL")
    if scheme != "data" and len(value) > MAX_URL_LENGTH:
        raise ValueError(f"must be at most {MAX_URL_LENGTH} characters")
    return value


class KindInput(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)

    #: the fields that hold images (a URL, or a list of them): their ``data:`` URLs are
    #: decoded and checked when the job is submitted (``gateway/inline_media.py``)
    image_fields: ClassVar[tuple[str, ...]] = ()


class ImageInput(KindInput):
    prompt: Prompt
    negative_prompt: OptionalText = None
    width: int = Field(1024, ge=64, le=4096, description="Image width in pixels.")
    height: int = Field(1024, ge=64, le=4096, description="Image height in pixels.")
    steps: int | None = Field(None, ge=1, le=150, description="Number of diffusion steps.")
    cfg_scale: float | None = Field(None, ge=0, le=50, description="Guidance scale.")
    sampler: str | None = Field(None, max_length=64, description="Sampling method.")
    seed: Seed = Field(None, description="Random seed; one is chosen when omitted.")
    num_images: int = Field(1, ge=1, le=4, description="Number of images to generate.")


class VideoInput(KindInput):
    image_fields = ("image_url",)

    prompt: Prompt
    negative_prompt: OptionalText = None
    duration: int = Field(4, ge=1, le=60, description="Length in seconds.")
    fps: int = Field(8, ge=1, le=60, description="Frames per second.")
    width: int = Field(512, ge=64, le=4096, description="Frame width in pixels.")
    height: int = Field(512, ge=64, le=4096, description="Frame height in pixels.")
    image_url: str | None = Field(None, description="Optional first frame (image-to-video).")
    seed: Seed = Field(None, description="Random seed; one is chosen when omitted.")

    _url = field_validator("image_url")(lambda v: None if v is None else _check_url(v))


class UpscaleInput(KindInput):
    image_fields = ("image_url",)

    image_url: str = Field(description="The image to upscale (http(s) or data: URL).")
    scale_factor: int = Field(2, ge=1, le=8, description="How many times larger.")

    _url = field_validator("image_url")(lambda v: _check_url(v))


class FaceSwapInput(KindInput):
    image_fields = ("source_image", "target_image")

    source_image: str = Field(description="The image whose face is used (URL).")
    target_image: str = Field(description="The image the face is put into (URL).")

    _url = field_validator("source_image", "target_image")(lambda v: _check_url(v))


# -- kinds of the Tasks API's task types (gateway/api/tasks/) ---------------------------------

ImageSide = Annotated[int | None, Field(default=None, ge=64, le=4096)]
LongText = Annotated[str, Field(min_length=1, max_length=32000)]


def _check_urls(values: list[str]) -> list[str]:
    return [_check_url(v) for v in values]


class EditInput(KindInput):
    image_fields = ("image_url", "reference_image_urls", "mask_url")

    image_url: str = Field(description="The image to edit (http(s) or data: URL).")
    prompt: Prompt
    mask_url: str | None = Field(
        None,
        description="Where to edit: the mask's fully transparent pixels (OpenAI's convention).",
    )
    reference_image_urls: list[str] = Field(
        default_factory=list, max_length=4, description="Reference images (URLs)."
    )
    width: ImageSide = Field(None, description="Output width; the input's when omitted.")
    height: ImageSide = Field(None, description="Output height; the input's when omitted.")
    seed: Seed = Field(None, description="Random seed; one is chosen when omitted.")

    _url = field_validator("image_url")(lambda v: _check_url(v))
    _mask = field_validator("mask_url")(lambda v: None if v is None else _check_url(v))
    _urls = field_validator("reference_image_urls")(_check_urls)


class RefineInput(KindInput):
    image_fields = ("image_url",)

    image_url: str = Field(description="The image to refine (http(s) or data: URL).")
    prompt: OptionalText = None
    scale_factor: float | None = Field(None, ge=1, le=8, description="Upscale factor.")
    width: ImageSide = Field(None, description="Target width (with height).")
    height: ImageSide = Field(None, description="Target height (with width).")
    steps: int | None = Field(None, ge=1, le=150, description="Number of inference steps.")
    denoise: float | None = Field(None, ge=0, le=1, description="Denoise strength.")
    face_detail: bool = Field(False, description="Also enhance face details.")
    face_detail_prompt: OptionalText = None
    seed: Seed = Field(None, description="Random seed; one is chosen when omitted.")

    _url = field_validator("image_url")(lambda v: _check_url(v))


class DetailEnhanceInput(KindInput):
    image_fields = ("image_url", "reference_image_url")

    image_url: str = Field(description="The image to enhance (http(s) or data: URL).")
    reference_image_url: str = Field(description="The image whose details are transferred.")
    label: str | None = Field(None, max_length=200, description="What to enhance (e.g. logos).")

    _url = field_validator("image_url", "reference_image_url")(lambda v: _check_url(v))


class BackgroundFixInput(KindInput):
    image_fields = ("image_url", "palette_image_url")

    image_url: str = Field(description="The image whose background is fixed (URL).")
    palette_image_url: str = Field(description="An image of the target background colour.")
    strategy: str | None = Field(None, max_length=64, description="Processing strategy.")
    edge_blur_sigma: float = Field(20.0, ge=0, le=200, description="Edge blur (Gaussian sigma).")
    light_threshold: int = Field(220, ge=0, le=255, description="Full shift above this.")
    shadow_threshold: int = Field(
        150, ge=0, le=255, validate_default=True, description="No shift below this."
    )
    mask_expansion: float = Field(0.005, ge=0, le=1, description="Mask growth (fraction).")

    _url = field_validator("image_url", "palette_image_url")(lambda v: _check_url(v))

    @field_validator("shadow_threshold")
    @classmethod
    def _below_light(cls, value: int, info: ValidationInfo) -> int:
        light = info.data.get("light_threshold")
        if isinstance(light, int) and value > light:
            raise ValueError(f"must not be above 'light_threshold' ({light})")
        return value


class FaceEnhanceInput(KindInput):
    image_fields = ("image_url",)

    image_url: str = Field(description="The image whose faces are enhanced (URL).")

    _url = field_validator("image_url")(lambda v: _check_url(v))


class BackgroundRemovalInput(KindInput):
    image_fields = ("image_urls",)

    image_urls: list[str] = Field(
        min_length=1, max_length=16, description="The images to cut out (URLs), one result each."
    )

    _urls = field_validator("image_urls")(_check_urls)


class ImageAdjustInput(KindInput):
    image_fields = ("image_url", "reference_image_url")

    image_url: str = Field(description="The image to adjust (http(s) or data: URL).")
    mode: Literal["auto", "crop", "pad", "scale"] = Field(
        "auto", description="auto: crop when the ratios differ by 5% or less, else pad."
    )
    aspect_ratio: float | None = Field(None, gt=0, le=20, description="Target width/height.")
    target_width: int | None = Field(None, ge=1, le=8192, description="Target width.")
    target_height: int | None = Field(
        None, ge=1, le=8192, validate_default=True, description="Target height."
    )
    cropping_position: Literal[
        "center",
        "top",
        "bottom",
        "left",
        "right",
        "top_left",
        "top_right",
        "bottom_left",
        "bottom_right",
    ] = Field("center", description="Where the kept box sits (crop mode).")
    resampling: Literal["lanczos", "bicubic", "bilinear", "nearest", "box", "hamming"] = Field(
        "lanczos", description="Resampling filter."
    )
    scaling_proportions: Literal["width", "height"] = Field(
        "height", description="Scale mode: the side matched exactly."
    )
    tolerance: float = Field(0.0, ge=0, le=1, description="Ratio difference left as it is.")
    margin_top: float | None = Field(None, ge=0, le=1, description="Needs subject detection.")
    margin_bottom: float | None = Field(None, ge=0, le=1, description="Needs subject detection.")
    margin_left: float | None = Field(None, ge=0, le=1, description="Needs subject detection.")
    margin_right: float | None = Field(None, ge=0, le=1, description="Needs subject detection.")
    reference_image_url: str | None = Field(None, description="Subject margins from this image.")

    _url = field_validator("image_url")(lambda v: _check_url(v))
    _ref = field_validator("reference_image_url")(lambda v: None if v is None else _check_url(v))

    @field_validator("target_height")
    @classmethod
    def _one_target(cls, value: int | None, info: ValidationInfo) -> int | None:
        """Checked last of the three (``validate_default``): exactly one target is given."""
        width, ratio = info.data.get("target_width"), info.data.get("aspect_ratio")
        if (width is None) != (value is None):
            raise ValueError("'target_width' and 'target_height' go together")
        if ratio is not None and value is not None:
            raise ValueError("give either 'aspect_ratio' or 'target_width' and 'target_height'")
        if ratio is None and value is None and "aspect_ratio" in info.data:
            raise ValueError("give 'aspect_ratio', or 'target_width' and 'target_height'")
        return value


class LLMInput(KindInput):
    image_fields = ("image_urls",)

    prompt: LongText
    system_prompt: str | None = Field(None, max_length=32000, description="System prompt.")
    image_urls: list[str] = Field(default_factory=list, max_length=8, description="Images.")

    _urls = field_validator("image_urls")(_check_urls)


class FalAppInput(KindInput):
    """Whatever the fal app takes: the fields are passed to it as they are."""

    model_config = ConfigDict(extra="allow", strict=True, frozen=True)


@dataclass(frozen=True)
class Kind:
    name: str
    input_model: type[KindInput]
    output_content_type: str
    description: str

    @cached_property
    def integer_fields(self) -> frozenset[str]:
        """The fields typed ``int``: a JSON number with no fraction (``512.0``) is an integer
        there, as JSON Schema counts it; the models are strict, so they get it as an ``int``."""
        fields = self.input_model.model_fields.items()
        return frozenset(name for name, info in fields if info.annotation in (int, int | None))

    @property
    def numeric_fields(self) -> frozenset[str]:
        out = set()
        for name, info in self.input_model.model_fields.items():
            ann = info.annotation
            if ann in (int, float) or ann in (int | None, float | None):
                out.add(name)
        return frozenset(out)

    def validate(
        self,
        raw: Any,
        *,
        defaults: dict[str, Any] | None = None,
        limits: dict[str, float] | None = None,
        param_prefix: str = "",
        max_input_bytes: int = DEFAULT_MAX_INPUT_BYTES,
    ) -> dict[str, Any]:
        """Turn a request's input into the canonical input, or raise ``InvalidRequest``.

        ``param_prefix`` is put before field names in errors (``input.`` for nested input).
        Images sent inline (``data:`` URLs) are decoded and checked here, so a bad one never
        becomes a job: at most ``max_input_bytes`` (else ``PayloadTooLarge``, 413), strict
        base64, and a PNG, JPEG, WebP or GIF by its content (``gateway/inline_media.py``).
        """
        if not isinstance(raw, dict):
            raise InvalidRequest(
                "'input' must be a JSON object.", param="input", code="invalid_type"
            )
        merged = dict(defaults or {})
        merged.update({k: v for k, v in raw.items() if v is not None})
        for name in self.integer_fields & merged.keys():
            value = merged[name]
            if isinstance(value, float) and value.is_integer():
                merged[name] = int(value)
        # the model's own bounds first, so an error names the tighter bound
        for key, bound in (limits or {}).items():
            rule, _, field = key.partition("_")
            value = merged.get(field)
            if isinstance(value, bool) or not isinstance(value, int | float):
                continue
            name = param_prefix + field
            if rule == "max" and value > bound:
                raise InvalidRequest(
                    f"Invalid '{name}': must be at most {_num(bound)} for this model "
                    f"(got {_num(value)}).",
                    param=name,
                    code="out_of_range",
                )
            if rule == "min" and value < bound:
                raise InvalidRequest(
                    f"Invalid '{name}': must be at least {_num(bound)} for this model "
                    f"(got {_num(value)}).",
                    param=name,
                    code="out_of_range",
                )
        try:
            parsed = self.input_model.model_validate(merged)
        except ValidationError as exc:
            raise validation_to_request_error(exc, param_prefix) from None
        data = parsed.model_dump()
        self._check_inline_images(data, param_prefix, max_input_bytes)
        if "seed" in data and data["seed"] is None:
            data["seed"] = _seeds.getrandbits(32)
        return data

    def _check_inline_images(self, data: dict[str, Any], prefix: str, max_bytes: int) -> None:
        for name in self.input_model.image_fields:
            value = data.get(name)
            items = value if isinstance(value, list) else [value]
            for i, url in enumerate(items):
                if is_data_url(url):
                    param = prefix + name + (f".{i}" if isinstance(value, list) else "")
                    decode_data_url(url, param=param, max_bytes=max_bytes, image=True)

    def parameters(self, defaults: dict[str, Any], limits: dict[str, float]) -> dict[str, Any]:
        """The input's JSON schema, with the model's own defaults and bounds applied."""
        schema = self.input_model.model_json_schema()
        props: dict[str, Any] = schema.get("properties", {})
        for name, prop in props.items():
            prop.pop("title", None)
            if "anyOf" in prop:  # Optional[x]: show the non-null type plainly
                types = [a for a in prop.pop("anyOf") if a.get("type") != "null"]
                if types:
                    prop.update(types[0])
                prop["nullable"] = True
            if name in defaults:
                prop["default"] = defaults[name]
            if f"max_{name}" in limits:
                prop["maximum"] = _plain(limits[f"max_{name}"])
            if f"min_{name}" in limits:
                prop["minimum"] = _plain(limits[f"min_{name}"])
        return {
            "type": "object",
            "properties": props,
            "required": schema.get("required", []),
            "additionalProperties": False,
        }


def _plain(value: float) -> float | int:
    return int(value) if float(value).is_integer() else value


def _num(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else str(value)


def validation_to_request_error(exc: ValidationError, param_prefix: str = "") -> InvalidRequest:
    err = exc.errors(include_url=False)[0]
    loc = param_prefix + ".".join(str(p) for p in err["loc"])
    kind = err["type"]
    if kind == "extra_forbidden":
        return InvalidRequest(f"Unknown parameter '{loc}'.", param=loc, code="unknown_parameter")
    if kind == "missing":
        return InvalidRequest(
            f"Missing required parameter '{loc}'.", param=loc, code="missing_parameter"
        )
    msg = err["msg"]
    if msg.startswith("Value error, "):
        msg = msg[len("Value error, ") :]
    return InvalidRequest(f"Invalid '{loc}': {msg}.", param=loc, code="invalid_value")


KINDS: dict[str, Kind] = {
    k.name: k
    for k in (
        Kind("image", ImageInput, "image/png", "Text to image."),
        Kind("video", VideoInput, "image/gif", "Text (or image) to video."),
        Kind("upscale", UpscaleInput, "image/png", "Make an image larger."),
        Kind("face_swap", FaceSwapInput, "image/png", "Put a face from one image into another."),
        Kind("edit", EditInput, "image/png", "Edit an image as a prompt says."),
        Kind("refine", RefineInput, "image/png", "Upscale and refine an image."),
        Kind("detail_enhance", DetailEnhanceInput, "image/png", "Enhance details of an image."),
        Kind("background_fix", BackgroundFixInput, "image/png", "Recolour an image's background."),
        Kind("face_enhance", FaceEnhanceInput, "image/png", "Enhance the faces in an image."),
        Kind(
            "background_removal",
            BackgroundRemovalInput,
            "image/png",
            "Cut the subject out of images.",
        ),
        Kind("image_adjust", ImageAdjustInput, "image/png", "Crop, pad or scale an image."),
        Kind("llm", LLMInput, "text/plain", "Answer a prompt with text."),
        Kind("fal_app", FalAppInput, "image/png", "Run a fal app with its own parameters."),
    )
}
