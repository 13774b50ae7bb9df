"""The one decoder of media sent inline: ``data:`` URLs and bare base64.

Every place that turns inline media into bytes goes through here: the kinds' image fields
when a job is submitted (``gateway/kinds.py``), the Tasks API's image fields
(``gateway/api/tasks/inputs.py``), the sandbox and local providers' inputs, and provider
outputs given as ``data:`` URLs (``gateway/results.py``). The rules:

- **Size**: at most ``max_bytes`` once decoded (``BACKSERV_MAX_INPUT_BYTES`` for inputs),
  refused from the encoded length before anything is decoded: 413 ``input_too_large``.
- **Strict base64**: the standard alphabet with its padding; ASCII whitespace is skipped
  (line-wrapped base64 is common), anything else (``-``/``_``, a missing or stray ``=``,
  data after the padding) is a 400 ``invalid_base64``. In a ``data:`` URL, ``%XX`` escapes
  are undone first (they are legal in any URL).
- **Content sniffing**: the bytes' type comes from their magic numbers (PNG, JPEG, WebP,
  GIF; MP4 and WebM for provider outputs), never from the declared type alone. A declared
  image type the bytes contradict is a 400 ``media_type_mismatch``; where an image is
  expected, bytes that are not one of the four are a 400 ``unsupported_image_type``. A
  ``data:`` URL that declares no type is typed by its bytes.

Errors are the gateway's own (``InvalidRequest``, ``PayloadTooLarge``), naming the field
(``param``) and the limit; callers on other seams (providers) translate them.
"""

from __future__ import annotations

import binascii
from dataclasses import dataclass
from urllib.parse import unquote_to_bytes

from gateway.errors import InvalidRequest, PayloadTooLarge

__all__ = [
    "DEFAULT_MAX_INPUT_BYTES",
    "IMAGE_TYPES",
    "InlineMedia",
    "decode_base64",
    "decode_data_url",
    "is_data_url",
    "sniff",
    "to_data_url",
]

#: the default of ``BACKSERV_MAX_INPUT_BYTES``
DEFAULT_MAX_INPUT_BYTES = 20 * 1024 * 1024
#: the image types accepted inline, by their magic numbers
IMAGE_TYPES = frozenset({"image/png", "image/jpeg", "image/webp", "image/gif"})
#: declared types that mean one of the above
_ALIASES = {"image/jpg": "image/jpeg", "image/pjpeg": "image/jpeg"}
_WHITESPACE = b" \t\r\n\f\v"
_NOT_BASE64 = (
    "the data is not valid base64 (the standard alphabet A-Z a-z 0-9 + / with '=' padding)"
)


@dataclass(frozen=True)
class InlineMedia:
    data: bytes
    #: the sniffed type; else the declared one; else ``application/octet-stream``
    media_type: str


def sniff(data: bytes) -> str | None:
    """The media type the bytes' magic numbers say, or None."""
    if data.startswith(b"\x89PNG\r\n\x1a\n"):
        return "image/png"
    if data.startswith(b"\xff\xd8\xff"):
        return "image/jpeg"
    if data.startswith((b"GIF87a", b"GIF89a")):
        return "image/gif"
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "image/webp"
    if data[4:8] == b"ftyp":
        return "video/mp4"
    if data.startswith(b"\x1a\x45\xdf\xa3"):
        return "video/webm"
    return None


def is_data_url(value: object) -> bool:
    return isinstance(value, str) and value[:5].lower() == "data:"


def _invalid(param: str, reason: str, code: str) -> InvalidRequest:
    return InvalidRequest(f"Invalid '{param}': {reason}.", param=param, code=code)


def _too_large(param: str, max_bytes: int) -> PayloadTooLarge:
    return PayloadTooLarge(
        f"Invalid '{param}': the inline data holds more than {max_bytes} bytes once decoded; "
        f"the limit is {max_bytes} bytes (BACKSERV_MAX_INPUT_BYTES). Send a URL instead.",
        param=param,
        code="input_too_large",
    )


def _strict_b64(text: bytes, param: str, max_bytes: int) -> bytes:
    compact = text.translate(None, _WHITESPACE)
    if len(compact) // 4 * 3 > max_bytes + 2:  # refused before decoding anything
        raise _too_large(param, max_bytes)
    try:
        data = binascii.a2b_base64(compact, strict_mode=True)
    except (binascii.Error, ValueError):
        raise _invalid(param, _NOT_BASE64, "invalid_base64") from None
    if len(data) > max_bytes:
        raise _too_large(param, max_bytes)
    return data


def _typed(data: bytes, declared: str | None, param: str, image: bool) -> InlineMedia:
    found = sniff(data)
    if declared is not None:
        declared = _ALIASES.get(declared, declared)
        if (image or declared in IMAGE_TYPES) and found != declared:
            what = f"{found} data" if found else "data of no image type it knows"
            raise _invalid(
                param,
                f"it declares {declared} but holds {what} (PNG, JPEG, WebP and GIF are accepted)",
                "media_type_mismatch",
            )
    if image and found not in IMAGE_TYPES:
        raise _invalid(
            param,
            "not an image of a supported type (PNG, JPEG, WebP or GIF, recognised by its content)",
            "unsupported_image_type",
        )
    return InlineMedia(data, found or declared or "application/octet-stream")


def decode_data_url(url: str, *, param: str, max_bytes: int, image: bool = False) -> InlineMedia:
    """The bytes of ``data:[<media type>][;base64],<data>``, checked as the module says.

    With ``image``, the bytes must be a PNG, JPEG, WebP or GIF image."""
    scheme, sep, rest = url.partition(":")
    if not sep or scheme.lower() != "data":
        raise _invalid(param, "not a data: URL", "invalid_data_url")
    header, comma, payload = rest.partition(",")
    if not comma:
        raise _invalid(
            param,
            "malformed data: URL (no ',' between its header and its data)",
            "invalid_data_url",
        )
    parts = [p.strip().lower() for p in header.split(";")]
    base64 = parts[-1] == "base64"
    declared = parts[0] or None
    if declared is not None and "/" not in declared:
        raise _invalid(param, f"malformed data: URL (media type '{parts[0]}')", "invalid_data_url")
    try:
        raw = payload.encode("ascii")
    except UnicodeEncodeError:
        raise _invalid(
            param, "a data: URL must be ASCII (escape other bytes as %XX)", "invalid_data_url"
        ) from None
    if len(raw) > max_bytes:  # refuse what cannot fit before decoding: an escape (%XX) is
        chars = len(raw) - 2 * raw.count(b"%")  # one character, base64 is 4 for 3 bytes
        if base64:
            chars = (chars - (len(raw) - len(raw.translate(None, _WHITESPACE)))) // 4 * 3 - 2
        if chars > max_bytes:
            raise _too_large(param, max_bytes)
    if b"%" in raw:
        raw = unquote_to_bytes(raw)
    if base64:
        data = _strict_b64(raw, param, max_bytes)
    else:
        data = raw
        if len(data) > max_bytes:
            raise _too_large(param, max_bytes)
    return _typed(data, declared, param, image)


def decode_base64(text: str, *, param: str, max_bytes: int, image: bool = False) -> InlineMedia:
    """Bare base64 (no ``data:`` header): strict, bounded, and typed by its content."""
    try:
        raw = text.encode("ascii")
    except UnicodeEncodeError:
        raise _invalid(param, _NOT_BASE64, "invalid_base64") from None
    return _typed(_strict_b64(raw, param, max_bytes), None, param, image)


def to_data_url(media: InlineMedia) -> str:
    """A ``data:`` URL of decoded media (canonical base64, no whitespace)."""
    encoded = binascii.b2a_base64(media.data, newline=False).decode()
    return f"data:{media.media_type};base64,{encoded}"
