"""``/v1/images/edits`` end to end with the real ``openai`` SDK over loopback: uploads, a
mask, several images, other kinds behind it, JSON image URLs, and errors naming the param."""

from __future__ import annotations

import base64
import io
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import openai
import pytest
from PIL import Image

from tests.api.openai_support import Served, serve_gateway
from tests.api.support import png

RED = (200, 30, 30)


@pytest.fixture
async def server(tmp_path: Path) -> AsyncIterator[Served]:
    async with serve_gateway(tmp_path) as s:
        yield s


@pytest.fixture
async def sdk(server: Served) -> AsyncIterator[openai.AsyncOpenAI]:
    async with server.sdk() as client:
        yield client


def decoded(b64: str | None) -> Image.Image:
    assert b64 is not None
    image = Image.open(io.BytesIO(base64.b64decode(b64)))
    image.load()
    return image.convert("RGB")


def half_mask(width: int, height: int) -> bytes:
    """Opaque on the right half (kept), fully transparent on the left half (edited)."""
    mask = Image.new("RGBA", (width, height), (0, 0, 0, 255))
    mask.paste((0, 0, 0, 0), (0, 0, width // 2, height))
    out = io.BytesIO()
    mask.save(out, "PNG")
    return out.getvalue()


async def test_edit_an_uploaded_image_returns_a_url_to_the_result(
    server: Served, sdk: openai.AsyncOpenAI
) -> None:
    raw = await sdk.images.with_raw_response.edit(
        model="sandbox-edit", image=("photo.png", png(96, 64), "image/png"), prompt="make it blue"
    )
    job_id = raw.headers["x-backserv-job-id"]
    result = raw.parse()
    assert result.data is not None and len(result.data) == 1
    [item] = result.data
    assert item.url is not None and item.url.startswith(f"{server.url}/files/{job_id}/")
    assert item.revised_prompt == "make it blue"
    async with httpx.AsyncClient() as browser:
        got = await browser.get(item.url)
    assert got.status_code == 200 and got.headers["content-type"] == "image/png"
    assert Image.open(io.BytesIO(got.content)).size == (96, 64)
    job = await server.gateway.store.get_job(job_id)
    assert job is not None and job.input["image_url"].startswith(f"{server.url}/files/{job_id}/")


async def test_a_mask_keeps_its_opaque_pixels_and_edits_the_transparent_ones(
    sdk: openai.AsyncOpenAI,
) -> None:
    result = await sdk.images.edit(
        model="sandbox-edit",
        image=("photo.png", png(64, 64, RED), "image/png"),
        mask=("mask.png", half_mask(64, 64), "image/png"),
        prompt="paint",
        response_format="b64_json",
    )
    assert result.data is not None
    image = decoded(result.data[0].b64_json)
    assert image.getpixel((60, 4)) == RED  # opaque in the mask: kept
    assert image.getpixel((4, 4)) != RED  # transparent: edited


async def test_several_images_reach_the_kind_as_its_references(
    server: Served, sdk: openai.AsyncOpenAI
) -> None:
    raw = await sdk.images.with_raw_response.edit(
        model="sandbox-edit",
        image=[
            ("a.png", png(64, 64), "image/png"),
            ("b.png", png(32, 32, (0, 0, 255)), "image/png"),
        ],
        prompt="combine",
        size="128x64",
    )
    job = await server.gateway.store.get_job(raw.headers["x-backserv-job-id"])
    assert job is not None and len(job.input["reference_image_urls"]) == 1
    assert (job.input["width"], job.input["height"]) == (128, 64)


async def test_other_image_kinds_run_behind_the_edit_endpoint(sdk: openai.AsyncOpenAI) -> None:
    upscaled = await sdk.images.edit(
        model="sandbox-upscale",
        image=("small.png", png(40, 30), "image/png"),
        prompt="bigger",
        response_format="b64_json",
        extra_body={"scale_factor": 2},
    )
    assert upscaled.data is not None and decoded(upscaled.data[0].b64_json).size == (80, 60)
    swapped = await sdk.images.edit(
        model="sandbox-face-swap",
        image=[
            ("target.png", png(64, 64), "image/png"),
            ("face.png", png(64, 64, (0, 255, 0)), "image/png"),
        ],
        prompt="swap",
        response_format="b64_json",
    )
    assert swapped.data is not None and decoded(swapped.data[0].b64_json).size == (64, 64)


async def test_json_with_image_urls_is_accepted(sdk: openai.AsyncOpenAI) -> None:
    data_url = "data:image/png;base64," + base64.b64encode(png(64, 64)).decode()
    body = await sdk.post(
        "/images/edits",
        body={"model": "sandbox-edit", "prompt": "tint", "images": [{"image_url": data_url}]},
        cast_to=object,
    )
    assert isinstance(body, dict) and len(body["data"]) == 1 and body["data"][0]["url"]


@pytest.mark.parametrize(
    ("model", "extra", "param", "code"),
    [
        ("sandbox-edit", {"mask": "text"}, "mask", "unsupported_image_type"),
        ("sandbox-upscale", {"mask": "png"}, "mask", "unsupported_parameter"),
        ("sandbox-upscale", {"size": "512x512"}, "size", "unsupported_parameter"),
        ("sandbox-edit", {"n": 2}, "n", "unsupported_parameter"),
        ("sandbox-edit", {"response_format": "gif"}, "response_format", "invalid_value"),
        ("sandbox-image", {}, "model", "wrong_model_kind"),
        ("sandbox-edit", {"size": "10x10"}, "size", "invalid_value"),
    ],
)
async def test_bad_input_is_a_bad_request_naming_the_parameter(
    sdk: openai.AsyncOpenAI, model: str, extra: dict[str, object], param: str, code: str
) -> None:
    kwargs: dict[str, object] = dict(extra)
    if kwargs.get("mask") == "text":
        kwargs["mask"] = ("mask.png", b"not an image", "image/png")
    elif kwargs.get("mask") == "png":
        kwargs["mask"] = ("mask.png", half_mask(64, 64), "image/png")
    with pytest.raises(openai.BadRequestError) as info:
        await sdk.images.edit(
            model=model,
            image=("photo.png", png(64, 64), "image/png"),
            prompt="x",
            **kwargs,  # type: ignore[arg-type]
        )
    assert (info.value.param, info.value.code) == (param, code), info.value.body


async def test_an_upload_over_the_input_limit_is_too_large(tmp_path: Path) -> None:
    async with serve_gateway(tmp_path, max_input_bytes=2048) as server, server.sdk() as sdk:
        with pytest.raises(openai.APIStatusError) as info:
            await sdk.images.edit(
                model="sandbox-edit",
                image=("big.png", png(400, 400) + b"\0" * 4096, "image/png"),
                prompt="x",
            )
    assert info.value.status_code == 413
    assert (info.value.param, info.value.code) == ("image", "input_too_large")  # type: ignore[attr-defined]
