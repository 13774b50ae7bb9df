"""``POST /v1/videos``'s parameters -> the video kind's canonical input.

OpenAI's ``seconds`` (a string such as ``"4"``) is the kind's ``duration``; ``size``
(``"720x1280"``) its ``width`` and ``height``; ``input_reference`` (an uploaded image, or
``{"image_url": ...}``) its ``image_url``, the first frame. The kind's other fields
(``negative_prompt``, ``fps``, ``seed``) pass through as they are; in a multipart form, whose
values are all text, an integer field's digits are read as a number.

A model that cannot honour a parameter refuses it, naming it: a route that drops the kind's
``duration`` (``input_map = { duration = "" }``), sends no size (``options.size = "none"``)
or drops ``image_url`` cannot make what was asked, and any route of the chain may run the
job. Bounds errors name OpenAI's parameter (``seconds``, ``size``), not the kind's field.
"""

from __future__ import annotations

from typing import Any

from gateway.api.common import body_str
from gateway.api.multipart import Params
from gateway.api.openai_sync import parse_size
from gateway.catalog import CatalogModel
from gateway.errors import InvalidRequest
from gateway.uploads import Upload

#: parameters of OpenAI's own that are not the kind's fields
OPENAI_FIELDS = frozenset({"model", "prompt", "seconds", "size", "input_reference"})
#: the gateway's own parameters (extra_body), handled by the face
OWN_FIELDS = frozenset({"webhook_url", "webhook_events", "user"})
#: canonical input fields reported under the OpenAI name the client sent
PARAM_NAMES = {
    "duration": "seconds",
    "width": "size",
    "height": "size",
    "image_url": "input_reference",
}


def _seconds(value: Any) -> int | None:
    if value is None or value == "":
        return None
    if isinstance(value, str) and value.isascii() and value.isdigit():
        return int(value)
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    raise InvalidRequest(
        "Invalid 'seconds': must be a whole number of seconds as a string, e.g. '4'.",
        param="seconds",
        code="invalid_value",
    )


def _honours(model: CatalogModel, field: str) -> bool:
    """Whether every route of ``model`` passes ``field`` of the canonical input on."""
    for route in model.routes:
        if field in ("width", "height"):
            if route.options.get("size") == "none":
                return False
        elif route.input_map.get(field) == "":
            return False
    return True


def _refuse(model: CatalogModel, param: str, what: str) -> InvalidRequest:
    return InvalidRequest(
        f"The model '{model.id}' cannot set {what}: leave '{param}' out, or choose another "
        "video model (GET /v1/models).",
        param=param,
        code="unsupported_parameter",
    )


def reference(params: Params) -> tuple[Upload | None, str | None]:
    """The ``input_reference``: an uploaded file, or an image URL (JSON ``{"image_url"}``,
    or the form field ``input_reference[image_url]``)."""
    files = params.files.get("input_reference") or []
    if len(files) > 1:
        raise InvalidRequest(
            "Invalid 'input_reference': send one file.",
            param="input_reference",
            code="invalid_value",
        )
    raw = params.body.get("input_reference")
    url = params.body.get("input_reference[image_url]")
    if isinstance(raw, dict):
        unknown = set(raw) - {"image_url"}
        if unknown:
            raise InvalidRequest(
                "Invalid 'input_reference': only 'image_url' (an http(s) or data: URL) is "
                f"supported here, not '{sorted(unknown)[0]}'.",
                param="input_reference",
                code="unsupported_parameter",
            )
        url = raw.get("image_url")
    elif raw is not None:
        raise InvalidRequest(
            "Invalid 'input_reference': upload an image file, or send {\"image_url\": URL}.",
            param="input_reference",
            code="invalid_type",
        )
    if "input_reference[file_id]" in params.body:
        raise InvalidRequest(
            "Invalid 'input_reference': file ids are not supported here; upload the image, "
            "or send its 'image_url'.",
            param="input_reference",
            code="unsupported_parameter",
        )
    if url is not None and not isinstance(url, str):
        raise InvalidRequest(
            "Invalid 'input_reference.image_url': must be a string.",
            param="input_reference",
            code="invalid_type",
        )
    if files and url is not None:
        raise InvalidRequest(
            "Invalid 'input_reference': send a file or an image_url, not both.",
            param="input_reference",
            code="invalid_value",
        )
    return (files[0] if files else None), url


def video_input(model: CatalogModel, params: Params, image_url: str | None) -> dict[str, Any]:
    """The raw video input (validated later by the kind) from the request's ``params``."""
    body = params.body
    integers = model.kind.integer_fields
    raw: dict[str, Any] = {}
    for name, value in body.items():
        if name in OPENAI_FIELDS or name in OWN_FIELDS or name.startswith("input_reference["):
            continue
        if params.multipart and name in integers and isinstance(value, str) and value.isdigit():
            value = int(value)
        raw[name] = value
    raw["prompt"] = body_str(body, "prompt")
    seconds = _seconds(body.get("seconds"))
    if seconds is not None:
        if not _honours(model, "duration"):
            raise _refuse(model, "seconds", "the video's length")
        raw["duration"] = seconds
    size = parse_size(body.get("size"), example="720x1280")
    if size:
        if not _honours(model, "width"):
            raise _refuse(model, "size", "the video's size")
        raw.update(size)
    if image_url is not None:
        if not _honours(model, "image_url"):
            raise _refuse(model, "input_reference", "a first frame")
        raw["image_url"] = image_url
    return raw
