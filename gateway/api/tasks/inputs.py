"""From a task's fields to its kind's canonical input (``gateway/kinds.py``).

Each task type names its fields in its own way (``base_image``, ``input_image``,
``upscale_factor``, ``duration_seconds``); ``translate`` renames them to the kind's fields,
keeps the task fields no kind has (LoRA paths, ``cfg_scale``, ...) as ``extras`` to show them
back, and remembers which task field each kind field came from, so that an error the kind
raises points at the field the client sent.

Images may be sent as http(s) URLs, ``data:`` URLs or bare base64 (made into a ``data:`` URL
here); the document's "local path" is refused: the gateway does not read its own disk for a
client.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from gateway.api.tasks.errors import invalid
from gateway.api.tasks.schemas import (
    CreateBackgroundFixTask,
    CreateBackgroundRemovalTask,
    CreateDetailEnhancerTask,
    CreateEditingTask,
    CreateExperimentalFalTask,
    CreateFaceEnhancerTask,
    CreateGenerationTask,
    CreateImageAdjusterTask,
    CreateLLMInteractionTask,
    CreateRefineTask,
    CreateTask,
    CreateVideoGenerationTask,
)
from gateway.errors import InvalidRequest
from gateway.inline_media import decode_base64, decode_data_url, is_data_url, to_data_url

_NOT_AN_IMAGE = (
    "must be an http(s) URL, a data: URL or base64-encoded image data (PNG, JPEG, WebP or "
    "GIF); local paths are not accepted"
)
Loc = tuple[str | int, ...]
#: ``image_ref`` with its size limit: (value, location) -> an http(s) or data: URL
ImageRef = Callable[[str, Loc], str]


@dataclass
class Translation:
    kind_input: dict[str, Any]
    #: kind field -> the task field it came from (for error locations)
    fields: dict[str, str] = field(default_factory=dict)
    #: task fields that are not part of the kind's input, kept to show them back
    extras: dict[str, Any] = field(default_factory=dict)

    def put(self, kind_field: str, task_field: str, value: Any) -> None:
        if value is not None:
            self.kind_input[kind_field] = value
        self.fields[kind_field] = task_field

    def keep(self, task: CreateTask, *names: str) -> None:
        for name in names:
            value = getattr(task, name)
            if value is not None:
                self.extras[name] = value


def image_ref(value: str, loc: Loc, *, max_bytes: int) -> str:
    """An http(s) or data: URL for an image sent as a URL, a data: URL or bare base64.

    Inline images go through the gateway's one decoder (``gateway/inline_media.py``): at
    most ``max_bytes`` (a 413), strict base64, and a PNG, JPEG, WebP or GIF by content."""
    text = value.strip()
    if text[:8].lower().startswith(("http://", "https://")):
        return text
    param = ".".join(str(p) for p in loc)
    try:
        if is_data_url(text):
            decode_data_url(text, param=param, max_bytes=max_bytes, image=True)
            return text
        return to_data_url(decode_base64(text, param=param, max_bytes=max_bytes, image=True))
    except InvalidRequest as exc:
        if exc.code == "invalid_base64" and not is_data_url(text):
            raise invalid(("body", *loc), _NOT_AN_IMAGE) from None
        reason = exc.message.removeprefix(f"Invalid '{param}': ").removesuffix(".")
        raise invalid(("body", *loc), reason) from None


def _first_image(task: CreateTask, url_of: ImageRef, *names: str) -> tuple[str | None, str]:
    """The first of ``names`` that is set, as an image URL, and its name (else the first)."""
    for name in names:
        value = getattr(task, name)
        if value is not None:
            return url_of(value, (name,)), name
    return None, names[0]


def _generation(task: CreateGenerationTask, url_of: ImageRef) -> Translation:
    out = Translation({})
    for name in ("prompt", "width", "height", "seed"):
        out.put(name, name, getattr(task, name))
    reference, _ = _first_image(task, url_of, "reference_image_url", "reference_image_data")
    if reference is not None:
        out.extras["reference_image_path"] = reference
    out.keep(
        task,
        "fal_app_id",
        "reference_image_strength",
        *(f"{p}_model_path" for p in ("subject", "product", "style", "product2")),
        *(f"{p}_lora_weight" for p in ("subject", "product", "style", "product2")),
    )
    return out


def _video(task: CreateVideoGenerationTask, url_of: ImageRef) -> Translation:
    out = Translation({})
    out.put("prompt", "prompt", task.prompt)
    out.put("negative_prompt", "negative_prompt", task.negative_prompt)
    out.put("duration", "duration_seconds", task.duration_seconds)
    image, name = _first_image(task, url_of, "input_image_url", "input_image_data")
    out.put("image_url", name, image)
    out.keep(task, "cfg_scale")
    return out


def _editing(task: CreateEditingTask, url_of: ImageRef) -> Translation:
    out = Translation({})
    image, name = _first_image(task, url_of, "base_image", "base_image_data", "base_image_url")
    if image is None:
        raise invalid(("body", "base_image"), "Field required", "missing")
    out.put("image_url", name, image)
    out.put("prompt", "prompt", task.prompt)
    refs = [url_of(r, ("reference_images", i)) for i, r in enumerate(task.reference_images or [])]
    for name in ("reference_image_data", "reference_image_url"):
        if (value := getattr(task, name)) is not None:
            refs.append(url_of(value, (name,)))
    out.put("reference_image_urls", "reference_images", refs)
    for name in ("width", "height", "seed"):
        out.put(name, name, getattr(task, name))
    out.keep(task, "fal_app_id", "workflow_id")
    return out


def _refine(task: CreateRefineTask, url_of: ImageRef) -> Translation:
    out = Translation({})
    out.put("image_url", "base_image_url", url_of(task.base_image_url, ("base_image_url",)))
    out.put("prompt", "upscale_prompt", task.upscale_prompt)
    out.put("scale_factor", "upscale_factor", task.upscale_factor if task.upscale_enabled else None)
    out.put("width", "target_width", task.target_width)
    out.put("height", "target_height", task.target_height)
    out.put("steps", "upscale_steps", task.upscale_steps)
    out.put("denoise", "upscale_denoise", task.upscale_denoise)
    out.put("seed", "upscale_seed", task.upscale_seed)
    out.put("face_detail", "face_detail_enabled", task.face_detail_enabled)
    out.put("face_detail_prompt", "face_detail_prompt", task.face_detail_prompt)
    out.keep(
        task,
        "upscale_enabled",
        "upscale_factor",
        "face_detail_seed",
        "face_detail_steps",
        "face_detail_denoise",
        "fal_app_id",
    )
    return out


def _detail(task: CreateDetailEnhancerTask, url_of: ImageRef) -> Translation:
    out = Translation({})
    out.put("image_url", "base_image", url_of(task.base_image, ("base_image",)))
    ref = url_of(task.reference_image, ("reference_image",))
    out.put("reference_image_url", "reference_image", ref)
    out.put("label", "detail_label", task.detail_label)
    return out


def _background_fix(task: CreateBackgroundFixTask, url_of: ImageRef) -> Translation:
    out = Translation({})
    out.put("image_url", "base_image", url_of(task.base_image, ("base_image",)))
    palette = url_of(task.palette_image, ("palette_image",))
    out.put("palette_image_url", "palette_image", palette)
    for name in ("strategy", "edge_blur_sigma", "light_threshold", "shadow_threshold"):
        out.put(name, name, getattr(task, name))
    out.put("mask_expansion", "mask_expansion_percentage", task.mask_expansion_percentage)
    return out


def _image_adjuster(task: CreateImageAdjusterTask, url_of: ImageRef) -> Translation:
    out = Translation({})
    out.put("image_url", "input_image", url_of(task.input_image, ("input_image",)))
    for name in ("mode", "cropping_position", "resampling", "scaling_proportions"):
        value = getattr(task, name)
        out.put(name, name, value.lower() if isinstance(value, str) else None)
    for name in ("aspect_ratio", "target_width", "target_height", "tolerance"):
        out.put(name, name, getattr(task, name))
    for side in ("top", "bottom", "left", "right"):
        out.put(f"margin_{side}", f"margin_{side}", getattr(task, f"margin_{side}"))
    ref, _ = _first_image(task, url_of, "reference_image")
    out.put("reference_image_url", "reference_image", ref)
    return out


def _face_enhancer(task: CreateFaceEnhancerTask, url_of: ImageRef) -> Translation:
    out = Translation({})
    out.put("image_url", "input_image", url_of(task.input_image, ("input_image",)))
    return out


def _background_removal(task: CreateBackgroundRemovalTask, url_of: ImageRef) -> Translation:
    urls = [url_of(p, ("input_image_paths", i)) for i, p in enumerate(task.input_image_paths)]
    out = Translation({})
    out.put("image_urls", "input_image_paths", urls)
    return out


def _llm(task: CreateLLMInteractionTask, url_of: ImageRef) -> Translation:
    out = Translation({})
    out.put("prompt", "prompt", task.prompt)
    out.put("system_prompt", "system_prompt", task.system_prompt)
    images = [url_of(u, ("input_images", i)) for i, u in enumerate(task.input_images or [])]
    out.put("image_urls", "input_images", images)
    return out


def _experimental_fal(task: CreateExperimentalFalTask, url_of: ImageRef) -> Translation:
    """``fal_parameters`` is the input, as it is: the fal app's own fields."""
    params = dict(task.fal_parameters or {})
    out = Translation(params, {name: f"fal_parameters.{name}" for name in params})
    out.extras["fal_app_id"] = task.fal_app_id
    return out


_TRANSLATORS: dict[type[CreateTask], Callable[[Any, ImageRef], Translation]] = {
    CreateGenerationTask: _generation,
    CreateVideoGenerationTask: _video,
    CreateEditingTask: _editing,
    CreateRefineTask: _refine,
    CreateDetailEnhancerTask: _detail,
    CreateBackgroundFixTask: _background_fix,
    CreateImageAdjusterTask: _image_adjuster,
    CreateFaceEnhancerTask: _face_enhancer,
    CreateBackgroundRemovalTask: _background_removal,
    CreateLLMInteractionTask: _llm,
    CreateExperimentalFalTask: _experimental_fal,
}


def translate(task: CreateTask, max_input_bytes: int) -> Translation:
    """``task``'s kind input; inline images may decode to at most ``max_input_bytes``."""
    return _TRANSLATORS[type(task)](task, functools.partial(image_ref, max_bytes=max_input_bytes))
