"""Request bodies of the OpenAI faces that take files: multipart forms, or JSON.

The ``openai`` SDK sends ``POST /v1/videos`` and ``POST /v1/images/edits`` as
``multipart/form-data`` (a list of files as ``image[]``, a nested object as
``input_reference[image_url]``, numbers as text). ``read_params`` reads either that or a JSON
object into one shape, ``Params``: the text fields as a dict (what a JSON body would hold) and
the files apart, each read into memory only after the whole body was seen to fit.

Bounds: the whole body at most ``max_bytes`` (413 ``body_too_large``, counted as it streams
in: nothing past it is read), at most ``MAX_FILES`` files and ``MAX_FIELDS`` text fields, and
a text field at most ``MAX_FIELD_BYTES``. Starlette's parser (python-multipart) spools a file
past 1 MiB to a temporary file, so a large upload is not held twice in memory.
"""

from __future__ import annotations

import hashlib
from collections.abc import AsyncGenerator
from dataclasses import dataclass, field
from typing import Any

from starlette.datastructures import UploadFile
from starlette.formparsers import MultiPartException, MultiPartParser
from starlette.requests import Request

from gateway.api.common import read_json
from gateway.errors import InvalidRequest, PayloadTooLarge, UnsupportedMediaType
from gateway.uploads import Upload

MAX_FILES = 20
MAX_FIELDS = 100
MAX_FIELD_BYTES = 64 * 1024


@dataclass
class Params:
    """A request's parameters: ``body`` as JSON would hold them, ``files`` by field name
    (``image[]`` is ``image``); ``multipart`` says which the request was."""

    body: dict[str, Any]
    files: dict[str, list[Upload]] = field(default_factory=dict)
    multipart: bool = False

    def hashable(self) -> dict[str, Any]:
        """What an Idempotency-Key's request hash covers: the fields and each file's bytes
        (by their SHA-256), so the same upload twice is the same request."""
        files = {
            name: [hashlib.sha256(u.data).hexdigest() for u in uploads]
            for name, uploads in sorted(self.files.items())
        }
        return {"fields": self.body, "files": files}


def _media(request: Request) -> str:
    ctype = request.headers.get("content-type") or ""
    return ctype.split(";", 1)[0].strip().lower()


def _field_name(raw: str) -> str:
    """``image[]`` -> ``image`` (the SDK's brackets for a list); anything else as it is."""
    return raw[:-2] if raw.endswith("[]") else raw


async def _bounded(request: Request, max_bytes: int) -> AsyncGenerator[bytes, None]:
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > max_bytes:
            raise PayloadTooLarge(
                f"The request body exceeds the limit of {max_bytes} bytes "
                "(BACKSERV_MAX_UPLOAD_BYTES).",
                code="body_too_large",
            )
        yield chunk


async def read_form(request: Request, max_bytes: int) -> Params:
    """A ``multipart/form-data`` body as ``Params``; 400 when it is malformed, 413 when it
    is larger than ``max_bytes``."""
    length = request.headers.get("content-length", "")
    if length.isdigit() and int(length) > max_bytes:
        raise PayloadTooLarge(
            f"The request body is {length} bytes; the limit is {max_bytes} "
            "(BACKSERV_MAX_UPLOAD_BYTES).",
            code="body_too_large",
        )
    parser = MultiPartParser(
        request.headers,
        _bounded(request, max_bytes),
        max_files=MAX_FILES,
        max_fields=MAX_FIELDS,
        max_part_size=MAX_FIELD_BYTES,
    )
    try:
        form = await parser.parse()
    except MultiPartException as exc:
        raise InvalidRequest(
            f"The multipart body is malformed: {exc.message}", code="invalid_multipart"
        ) from None
    params = Params(body={}, multipart=True)
    try:
        for raw_name, value in form.multi_items():
            name = _field_name(raw_name)
            if isinstance(value, UploadFile):
                data = await value.read()
                upload = Upload(name, value.filename or "upload", value.content_type, data)
                params.files.setdefault(name, []).append(upload)
            elif raw_name.endswith("[]"):
                params.body.setdefault(name, []).append(value)
            else:
                params.body[name] = value
    finally:
        await form.close()
    return params


async def read_params(request: Request, *, max_json: int, max_form: int) -> Params:
    """The request's parameters from a JSON object (at most ``max_json`` bytes) or a
    multipart form (at most ``max_form``); any other Content-Type is a 415."""
    media = _media(request)
    if media == "multipart/form-data":
        return await read_form(request, max_form)
    if media in ("", "application/json") or media.endswith("+json"):
        return Params(await read_json(request, max_json))
    raise UnsupportedMediaType(
        f"The request body must be multipart/form-data or JSON; got Content-Type '{media}'.",
        code="unsupported_media_type",
    )
