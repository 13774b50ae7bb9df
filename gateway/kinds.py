"""The kinds of job: what each one takes as input (with bounds and defaults) and returns.

A kind owns its canonical input schema. Faces translate their wire dialect into it; providers
translate it into their own targets' fields. A catalog model can tighten the bounds
(``min_<field>`` / ``max_<field>``) and change the defaults, never widen them.
"""

from __future__ import annotations

import random
import secrets
from dataclasses import dataclass
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from gateway.errors import InvalidRequest

MAX_SEED = 2**32 - 1
_seeds = random.Random(secrets.randbits(64))
MAX_URL_LENGTH = 8 * 1024 * 1024  # data: URLs carry whole images

Prompt = Annotated[str, Field(min_length=1, max_length=4000)]
OptionalText = Annotated[str | None, Field(default=None, max_length=4000)]
Seed = Annotated[int | None, Field(default=None, ge=0, le=MAX_SEED)]


def _check_url(value: str) -> str:
    scheme = value.split(":", 1)[0].lower() if ":" in value else ""
    if scheme not in ("http", "https", "data"):
        raise ValueError("must be an http(s) URL or a data: URL")
    if len(value) > MAX_URL_LENGTH:
        raise ValueError(f"must be at most {MAX_URL_LENGTH} characters")
    return value


class KindInput(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


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
    image_url: str = Field(description="The image to upscale (http(s) or data: URL).")
    scale_factor: int = Field(2, ge=1, le=8, description="How many times larger.")

    _url = field_validator("image_url")(lambda v: _check_url(v))


class FaceSwapInput(KindInput):
    source_image: str = Field(description="The image whose face is used (URL).")
    target_image: str = Field(description="The image the face is put into (URL).")

    _url = field_validator("source_image", "target_image")(lambda v: _check_url(v))


@dataclass(frozen=True)
class Kind:
    name: str
    input_model: type[KindInput]
    output_content_type: str
    description: str

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
    ) -> dict[str, Any]:
        """Turn a request's input into the canonical input, or raise ``InvalidRequest``.

        ``param_prefix`` is put before field names in errors (``input.`` for nested input).
        """
        if not isinstance(raw, dict):
            raise InvalidRequest(
                "'input' must be a JSON object.", param="input", code="invalid_type"
            )
        merged = dict(defaults or {})
        merged.update({k: v for k, v in raw.items() if v is not None})
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
        if "seed" in data and data["seed"] is None:
            data["seed"] = _seeds.getrandbits(32)
        return data

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
    )
}
