"""``POST /v1/images/edits``'s images, mask, prompt and size -> the input of the model's kind.

Any kind that takes an input image can run behind OpenAI's edit endpoint. Each says where
the request's images go (``Shape``): the first image is the one worked on; a second one, if
the kind has a second input, goes there (a face swap's face, a detail enhancer's reference,
a background fix's palette), or that field may come from ``extra_body`` by its own name
(``source_image``, ...). The ``mask`` and ``size`` reach only kinds that take them; the
``prompt`` (which the SDK requires) only kinds that read one. Asking a kind for what it
cannot do (a mask, a size, more images, ``n`` above 1) is a 400 naming the parameter.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from gateway.api.openai_sync import parse_size
from gateway.catalog import CatalogModel
from gateway.errors import InvalidRequest


@dataclass(frozen=True)
class Shape:
    #: the field of the first image (or, with ``all_images``, of every image, a list)
    first: str
    #: the field of the second image, if the kind has one
    second: str | None = None
    #: the list field for images after the first (an edit's references)
    rest: str | None = None
    mask: str | None = None
    prompt: bool = False
    size: bool = False
    all_images: bool = False


SHAPES: dict[str, Shape] = {
    "edit": Shape(
        "image_url", rest="reference_image_urls", mask="mask_url", prompt=True, size=True
    ),
    "upscale": Shape("image_url"),
    "face_swap": Shape("target_image", second="source_image"),
    "refine": Shape("image_url", prompt=True, size=True),
    "detail_enhance": Shape("image_url", second="reference_image_url"),
    "background_fix": Shape("image_url", second="palette_image_url"),
    "face_enhance": Shape("image_url"),
    "background_removal": Shape("image_urls", all_images=True),
    "image_adjust": Shape("image_url", second="reference_image_url"),
}


def shape_of(model: CatalogModel) -> Shape:
    shape = SHAPES.get(model.kind.name)
    if shape is None:
        kinds = ", ".join(sorted(SHAPES))
        raise InvalidRequest(
            f"The model '{model.id}' is a {model.kind.name} model, which takes no input image; "
            f"/v1/images/edits runs models of the kinds {kinds}.",
            param="model",
            code="wrong_model_kind",
        )
    return shape


def _unsupported(model: CatalogModel, param: str, what: str) -> InvalidRequest:
    return InvalidRequest(
        f"The model '{model.id}' ({model.kind.name}) {what}; leave '{param}' out.",
        param=param,
        code="unsupported_parameter",
    )


def edit_input(
    model: CatalogModel,
    images: list[str],
    mask: str | None,
    body: dict[str, Any],
    extras: dict[str, Any],
) -> dict[str, Any]:
    """The raw input (validated later by the kind) for ``model``: ``images`` and ``mask``
    are URLs; ``body`` the request's OpenAI fields; ``extras`` the kind's own fields."""
    shape = shape_of(model)
    if not images:
        raise InvalidRequest(
            "Missing required parameter 'image'.", param="image", code="missing_parameter"
        )
    raw = dict(extras)
    if shape.all_images:
        raw[shape.first] = images
    else:
        raw[shape.first] = images[0]
        others = images[1:]
        if others and shape.second is not None:
            if len(others) > 1:
                raise _unsupported(model, "image", "takes at most two images")
            raw[shape.second] = others[0]
        elif others and shape.rest is not None:
            raw[shape.rest] = others
        elif others:
            raise _unsupported(model, "image", "takes one image")
    if mask is not None:
        if shape.mask is None:
            raise _unsupported(model, "mask", "takes no mask")
        raw[shape.mask] = mask
    n = body.get("n")
    if isinstance(n, str) and n.isascii() and n.isdigit():
        n = int(n)
    if n is not None and n != 1:
        raise _unsupported(model, "n", "makes one image per request (n must be 1)")
    size = parse_size(body.get("size"))
    if size:
        if not shape.size:
            raise _unsupported(model, "size", "keeps the input's size")
        raw.update(size)
    prompt = body.get("prompt")
    if prompt is None:
        raise InvalidRequest(
            "Missing required parameter 'prompt'.", param="prompt", code="missing_parameter"
        )
    if not isinstance(prompt, str):
        raise InvalidRequest(
            "Invalid 'prompt': must be a string.", param="prompt", code="invalid_type"
        )
    if shape.prompt:
        raw["prompt"] = prompt
    return raw
