"""The one decoder of inline media (gateway/inline_media.py): ``data:`` URLs and base64."""

from __future__ import annotations

import base64
import io

import pytest
from PIL import Image

from gateway.errors import InvalidRequest, PayloadTooLarge
from gateway.inline_media import (
    IMAGE_TYPES,
    decode_base64,
    decode_data_url,
    sniff,
    to_data_url,
)

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def image(fmt: str) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (4, 3), (10, 200, 30)).save(out, format=fmt)
    return out.getvalue()


REAL = {
    "image/png": image("PNG"),
    "image/jpeg": image("JPEG"),
    "image/webp": image("WEBP"),
    "image/gif": image("GIF"),
}


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def url(data: bytes, media_type: str = "image/png") -> str:
    return f"data:{media_type};base64,{b64(data)}"


def refused(value: str, *, max_bytes: int = 1000, image: bool = True) -> InvalidRequest:
    with pytest.raises(InvalidRequest) as info:
        decode_data_url(value, param="input.image_url", max_bytes=max_bytes, image=image)
    assert info.value.param == "input.image_url"
    assert "'input.image_url'" in info.value.message
    return info.value


# -- sniffing ---------------------------------------------------------------------------------


@pytest.mark.parametrize("media_type", sorted(IMAGE_TYPES))
def test_each_image_type_is_recognised_by_its_content(media_type: str) -> None:
    assert sniff(REAL[media_type]) == media_type


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"hello",
        image("BMP"),
        image("TIFF"),
        b"<svg xmlns='http://www.w3.org/2000/svg'/>",
        PNG_SIGNATURE[:7],
    ],
)
def test_other_content_is_not_an_image(data: bytes) -> None:
    assert sniff(data) not in IMAGE_TYPES


# -- data: URLs -------------------------------------------------------------------------------


@pytest.mark.parametrize("media_type", sorted(IMAGE_TYPES))
def test_a_data_url_of_each_image_type_decodes(media_type: str) -> None:
    media = decode_data_url(
        url(REAL[media_type], media_type), param="p", max_bytes=10**6, image=True
    )
    assert (media.data, media.media_type) == (REAL[media_type], media_type)


def test_whitespace_and_a_missing_media_type_are_accepted() -> None:
    encoded = b64(REAL["image/png"])
    wrapped = "\n".join(encoded[i : i + 76] for i in range(0, len(encoded), 76))
    media = decode_data_url("data:;base64," + wrapped, param="p", max_bytes=10**6, image=True)
    assert media == decode_data_url(url(REAL["image/png"]), param="p", max_bytes=10**6)
    assert media.media_type == "image/png"  # typed by its content


def test_media_type_parameters_case_and_the_jpg_alias_are_accepted() -> None:
    value = "DATA:Image/JPG;name=a.jpg;BASE64," + b64(REAL["image/jpeg"])
    media = decode_data_url(value, param="p", max_bytes=10**6, image=True)
    assert media.media_type == "image/jpeg"


def test_percent_escapes_are_undone() -> None:
    encoded = b64(REAL["image/png"]).replace("+", "%2B").replace("/", "%2F")
    media = decode_data_url("data:image/png;base64," + encoded, param="p", max_bytes=10**6)
    assert media.data == REAL["image/png"]
    plain = decode_data_url("data:,a%20b%2Cc", param="p", max_bytes=100)
    assert (plain.data, plain.media_type) == (b"a b,c", "application/octet-stream")


def test_a_declared_type_the_content_contradicts_is_refused() -> None:
    error = refused(url(REAL["image/jpeg"], "image/png"))
    assert error.code == "media_type_mismatch"
    assert "image/png" in error.message and "image/jpeg" in error.message
    assert refused(url(b"hello, world")).code == "media_type_mismatch"
    # even where no image is expected, a declared image type must be true
    assert refused(url(b"hello, world"), image=False).code == "media_type_mismatch"
    # a declared non-image type holding an image, where an image is expected
    assert refused(url(REAL["image/png"], "text/plain")).code == "media_type_mismatch"


@pytest.mark.parametrize("fmt", ["BMP", "TIFF"])
def test_only_png_jpeg_webp_and_gif_are_accepted_as_images(fmt: str) -> None:
    error = refused("data:;base64," + b64(image(fmt)))
    assert error.code == "unsupported_image_type"
    assert "PNG, JPEG, WebP or GIF" in error.message


@pytest.mark.parametrize(
    "body",
    [
        "!!!notbase64",
        "iVBORw0KGgo",  # padding missing
        "iVBORw0K=Ggo=",  # padding in the middle
        "iVBORw0KGgo=iVBO",  # data after the padding
        "iVBORw0KGgo-_w==",  # the URL-safe alphabet
        "iVBORw0KGgo\u00e9=",  # not ASCII
    ],
)
def test_base64_is_strict(body: str) -> None:
    error = refused("data:image/png;base64," + body)
    assert error.code in ("invalid_base64", "invalid_data_url")


@pytest.mark.parametrize(
    "value",
    ["https://example.com/a.png", "data:image/png;base64", "nodata", "data:base64,AAAA"],
)
def test_malformed_data_urls_are_refused(value: str) -> None:
    assert refused(value).code == "invalid_data_url"


def test_exactly_max_bytes_is_accepted() -> None:
    data = PNG_SIGNATURE + b"x" * 22
    assert len(decode_data_url(url(data), param="p", max_bytes=30).data) == 30


@pytest.mark.parametrize(
    "value",
    [
        url(PNG_SIGNATURE + b"x" * 23),
        url(PNG_SIGNATURE + b"x" * 10_000),
        "data:," + "x" * 31,
        "data:," + "%41" * 31,
        "data:;base64," + "\n".join([b64(b"x" * 300)] * 3),
    ],
)
def test_more_than_max_bytes_is_a_413_naming_the_field_and_the_limit(value: str) -> None:
    with pytest.raises(PayloadTooLarge) as info:
        decode_data_url(value, param="input.image_url", max_bytes=30)
    error = info.value
    assert (error.status_code, error.param, error.code) == (
        413,
        "input.image_url",
        "input_too_large",
    )
    assert "30 bytes" in error.message and "BACKSERV_MAX_INPUT_BYTES" in error.message


def test_a_huge_data_url_is_refused_before_it_is_decoded(monkeypatch: pytest.MonkeyPatch) -> None:
    def no_decoding(*args: object, **kwargs: object) -> bytes:
        raise AssertionError("decoded although its length alone is over the limit")

    monkeypatch.setattr("gateway.inline_media.binascii.a2b_base64", no_decoding)
    with pytest.raises(PayloadTooLarge):
        decode_data_url(url(b"x" * 100_000), param="p", max_bytes=1000)


# -- bare base64 ------------------------------------------------------------------------------


def test_bare_base64_is_typed_by_its_content_and_made_a_data_url() -> None:
    media = decode_base64(b64(REAL["image/webp"]), param="p", max_bytes=10**6, image=True)
    assert media.media_type == "image/webp"
    assert to_data_url(media) == "data:image/webp;base64," + b64(REAL["image/webp"])


def test_bare_base64_follows_the_same_rules() -> None:
    with pytest.raises(InvalidRequest) as info:
        decode_base64("not base64!", param="p", max_bytes=100, image=True)
    assert info.value.code == "invalid_base64"
    with pytest.raises(InvalidRequest) as info:
        decode_base64(b64(b"plain text"), param="p", max_bytes=100, image=True)
    assert info.value.code == "unsupported_image_type"
    with pytest.raises(PayloadTooLarge):
        decode_base64(b64(REAL["image/png"]), param="p", max_bytes=10, image=True)
