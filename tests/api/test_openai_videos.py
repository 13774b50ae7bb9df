"""``/v1/videos`` end to end with the real ``openai`` SDK over loopback: create and poll,
download every variant, list, remix, delete, errors, other keys, and OpenAI-worded webhooks
that ``client.webhooks.unwrap`` verifies."""

from __future__ import annotations

import io
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import openai
import pytest
from PIL import Image

from gateway.catalog import Catalog, parse_catalog
from providers.registry import KNOWN_PROVIDERS
from tests.api.openai_support import Served, serve_gateway
from tests.api.support import png
from tests.conftest import KEY_B, ROOT
from tests.emulators.receiver import Receiver
from tests.emulators.server import serve

pytestmark = pytest.mark.filterwarnings("ignore:The Sora API:DeprecationWarning")

LTX = {  # a video model that can set neither the length nor the size of its videos
    "id": "ltx-like",
    "kind": "video",
    "description": "A route that drops duration and size.",
    "routes": [
        {
            "provider": "sandbox",
            "target": "video",
            "options": {"size": "none"},
            "input_map": {"duration": ""},
        }
    ],
}


def _catalog() -> Catalog:
    import tomllib

    raw: dict[str, Any] = tomllib.loads((ROOT / "catalog.toml").read_text(encoding="utf-8"))
    raw["models"].append(LTX)
    return parse_catalog(raw, KNOWN_PROVIDERS, source="test-videos.toml")


@pytest.fixture
async def server(tmp_path: Path) -> AsyncIterator[Served]:
    async with serve_gateway(tmp_path, _catalog(), webhook_allow="127.0.0.1") as s:
        yield s


@pytest.fixture
async def sdk(server: Served) -> AsyncIterator[openai.AsyncOpenAI]:
    async with server.sdk() as client:
        yield client


async def make(sdk: openai.AsyncOpenAI, prompt: str = "a kite", **kw: Any) -> Any:
    kw.setdefault("model", "sandbox-video")
    kw.setdefault("seconds", "1")
    kw.setdefault("size", "64x64")
    return await sdk.videos.create_and_poll(prompt=prompt, poll_interval_ms=20, **kw)


def frames(data: bytes) -> Image.Image:
    image = Image.open(io.BytesIO(data))
    image.load()
    return image


async def test_create_and_poll_then_download_saves_a_playable_animation(
    sdk: openai.AsyncOpenAI, tmp_path: Path
) -> None:
    before = int(time.time())
    video = await make(sdk, "a kite over the sea", seconds="2", size="96x64")
    assert video.status == "completed" and video.progress == 100 and video.object == "video"
    assert video.model == "sandbox-video" and video.prompt == "a kite over the sea"
    assert (video.seconds, video.size) == ("2", "96x64")
    assert before <= video.created_at <= (video.completed_at or 0) <= int(time.time()) + 1
    assert video.expires_at is not None and video.expires_at > video.completed_at
    assert video.error is None and video.remixed_from_video_id is None

    content = await sdk.videos.download_content(video.id)
    target = tmp_path / "kite.gif"
    content.write_to_file(target)
    assert content.response.headers["content-type"] == "image/gif"
    clip = frames(target.read_bytes())
    assert clip.format == "GIF" and clip.size == (96, 64) and clip.n_frames > 1

    job = await sdk.get(f"/jobs/{video.id}", cast_to=object)  # a video is a job
    assert isinstance(job, dict) and job["kind"] == "video" and job["status"] == "COMPLETED"
    assert job["input"]["duration"] == 2


async def test_thumbnail_and_spritesheet_are_drawn_from_the_video(sdk: openai.AsyncOpenAI) -> None:
    video = await make(sdk, seconds="2", size="96x64")
    thumb = await sdk.videos.download_content(video.id, variant="thumbnail")
    assert thumb.response.headers["content-type"] == "image/webp"
    assert frames(thumb.content).size == (96, 64)
    sheet = await sdk.videos.download_content(video.id, variant="spritesheet")
    assert sheet.response.headers["content-type"] == "image/jpeg"
    image = frames(sheet.content)
    assert image.format == "JPEG" and image.height % 64 == 0 and image.width % 96 == 0


async def test_an_unknown_variant_is_a_bad_request_naming_it(sdk: openai.AsyncOpenAI) -> None:
    video = await make(sdk)
    with pytest.raises(openai.BadRequestError) as info:
        await sdk.get(
            f"/videos/{video.id}/content", cast_to=object, options={"params": {"variant": "poster"}}
        )
    assert info.value.param == "variant" and info.value.code == "invalid_value"


async def test_list_pages_newest_first_or_oldest_first(sdk: openai.AsyncOpenAI) -> None:
    ids = [
        (await sdk.videos.create(model="sandbox-video", prompt=f"v{i}", seconds="1")).id
        for i in range(3)
    ]
    await sdk.images.generate(model="sandbox-image-fast", prompt="not a video", size="64x64")
    page = await sdk.videos.list(limit=2)
    assert [v.id for v in page.data] == ids[::-1][:2] and page.has_more
    assert page.last_id == ids[1]
    rest = await sdk.videos.list(limit=2, after=page.last_id)
    assert [v.id for v in rest.data] == [ids[0]] and not rest.has_more
    every = [v.id async for v in sdk.videos.list(limit=1, order="asc")]
    assert every == ids  # auto-pagination follows last_id; image jobs are not videos
    with pytest.raises(openai.BadRequestError) as info:
        await sdk.videos.list(order="sideways")  # type: ignore[arg-type]
    assert info.value.param == "order"


async def test_delete_removes_the_video_and_its_content(sdk: openai.AsyncOpenAI) -> None:
    video = await make(sdk)
    deleted = await sdk.videos.delete(video.id)
    assert (deleted.id, deleted.object, deleted.deleted) == (video.id, "video.deleted", True)
    with pytest.raises(openai.NotFoundError) as info:
        await sdk.videos.download_content(video.id)
    assert info.value.code == "video_not_found"
    with pytest.raises(openai.NotFoundError):
        await sdk.videos.retrieve(video.id)


async def test_deleting_a_running_video_cancels_it_first(
    server: Served, sdk: openai.AsyncOpenAI
) -> None:
    video = await sdk.videos.create(
        model="sandbox-video", prompt="slow", seconds="1", extra_body={"fps": 2}
    )
    deleted = await sdk.videos.delete(video.id)
    assert deleted.deleted
    assert await server.gateway.store.get_job(video.id) is None


async def test_another_keys_video_is_not_found(server: Served, sdk: openai.AsyncOpenAI) -> None:
    video = await make(sdk)
    async with server.sdk(api_key=KEY_B) as other:
        with pytest.raises(openai.NotFoundError):
            await other.videos.retrieve(video.id)
        with pytest.raises(openai.NotFoundError):
            await other.videos.download_content(video.id)
        with pytest.raises(openai.NotFoundError):
            await other.videos.delete(video.id)
        with pytest.raises(openai.NotFoundError):
            await other.videos.remix(video.id, prompt="mine now")
        assert (await other.videos.list()).data == []
    assert (await sdk.videos.retrieve(video.id)).status == "completed"


async def test_remix_keeps_the_settings_with_a_new_prompt(sdk: openai.AsyncOpenAI) -> None:
    video = await make(sdk, "a kite", seconds="2", size="80x64")
    remix = await sdk.videos.remix(video.id, prompt="a red kite")
    assert remix.id != video.id and remix.remixed_from_video_id == video.id
    assert (remix.prompt, remix.seconds, remix.size) == ("a red kite", "2", "80x64")
    done = await sdk.videos.poll(remix.id, poll_interval_ms=20)
    assert done.status == "completed"
    assert frames((await sdk.videos.download_content(done.id)).content).size == (80, 64)


async def test_input_reference_upload_is_stored_as_a_file_not_in_the_job(
    server: Served, sdk: openai.AsyncOpenAI
) -> None:
    first = png(64, 64, (10, 200, 30))
    video = await make(sdk, input_reference=("first.png", first, "image/png"))
    assert video.status == "completed", video.error
    job = await server.gateway.store.get_job(video.id)
    assert job is not None
    url = job.input["image_url"]
    assert url.startswith(f"{server.url}/files/{video.id}/") and len(url) < 300
    clip = frames((await sdk.videos.download_content(video.id)).content)
    assert clip.convert("RGB").getpixel((32, 32)) != (0, 0, 0)


async def test_an_input_reference_that_is_not_an_image_is_refused(sdk: openai.AsyncOpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as info:
        await sdk.videos.create(
            model="sandbox-video",
            prompt="x",
            input_reference=("notes.png", b"just text", "image/png"),
        )
    assert info.value.param == "input_reference" and info.value.code == "unsupported_image_type"
    assert (await sdk.videos.list()).data == []


@pytest.mark.parametrize(
    ("kwargs", "param", "code"),
    [
        ({"seconds": "11"}, "seconds", "out_of_range"),  # sandbox-video's max_duration is 10
        ({"seconds": "four"}, "seconds", "invalid_value"),
        ({"size": "big"}, "size", "invalid_value"),
        ({"size": "2048x2048"}, "size", "out_of_range"),
        ({"model": "sandbox-image"}, "model", "wrong_model_kind"),
        ({"model": "ltx-like", "seconds": "8"}, "seconds", "unsupported_parameter"),
        ({"model": "ltx-like", "size": "720x1280"}, "size", "unsupported_parameter"),
        (
            {"extra_body": {"webhook_events": ["started"]}},
            "webhook_events",
            "unsupported_parameter",
        ),
    ],
)
async def test_bad_parameters_are_bad_requests_naming_them(
    sdk: openai.AsyncOpenAI, kwargs: dict[str, Any], param: str, code: str
) -> None:
    kwargs.setdefault("model", "sandbox-video")
    with pytest.raises(openai.BadRequestError) as info:
        await sdk.videos.create(prompt="a kite", **kwargs)
    assert (info.value.param, info.value.code) == (param, code), info.value.body


async def test_an_unknown_model_is_not_found(sdk: openai.AsyncOpenAI) -> None:
    with pytest.raises(openai.NotFoundError) as info:
        await sdk.videos.create(model="sora-2", prompt="a kite")
    assert info.value.param == "model"


async def test_webhook_is_openais_event_and_unwrap_verifies_it(
    server: Served, sdk: openai.AsyncOpenAI
) -> None:
    receiver = Receiver()
    async with serve(receiver.app) as hooks:
        video = await make(sdk, extra_body={"webhook_url": f"{hooks}/openai"})
        [delivery] = await receiver.wait_for(1, timeout=10)
    secret = await sdk.get("/webhook_secret", cast_to=object)
    assert isinstance(secret, dict)
    event = sdk.webhooks.unwrap(delivery.body, delivery.headers, secret=secret["secret"])
    assert event.type == "video.completed" and event.data.id == video.id  # type: ignore[comparison-overlap]
    assert event.object == "event" and event.id.startswith("evt_")

    tampered = delivery.body.replace(video.id.encode(), b"job-" + b"0" * 24)
    with pytest.raises(openai.InvalidWebhookSignatureError):
        sdk.webhooks.unwrap(tampered, delivery.headers, secret=secret["secret"])
    with pytest.raises(openai.InvalidWebhookSignatureError):
        sdk.webhooks.unwrap(delivery.body, delivery.headers, secret="whsec_" + "A" * 44)


async def test_a_failed_video_is_failed_with_its_error_and_webhook(tmp_path: Path) -> None:
    import tomllib

    raw: dict[str, Any] = tomllib.loads((ROOT / "catalog.toml").read_text(encoding="utf-8"))
    raw["models"].append(
        {
            "id": "broken-video",
            "kind": "video",
            "description": "Fails every time.",
            "routes": [
                {"provider": "sandbox", "target": "video", "options": {"failure_rate": 1.0}}
            ],
        }
    )
    catalog = parse_catalog(raw, KNOWN_PROVIDERS, source="test-broken.toml")
    receiver = Receiver()
    async with (
        serve_gateway(tmp_path, catalog, webhook_allow="127.0.0.1", max_route_attempts=1) as server,
        server.sdk() as sdk,
        serve(receiver.app) as hooks,
    ):
        video = await make(sdk, model="broken-video", extra_body={"webhook_url": f"{hooks}/h"})
        assert video.status == "failed" and video.error is not None and video.error.code
        [delivery] = await receiver.wait_for(1, timeout=10)
        secret = await sdk.get("/webhook_secret", cast_to=object)
        assert isinstance(secret, dict)
        event = sdk.webhooks.unwrap(delivery.body, delivery.headers, secret=secret["secret"])
        assert event.type == "video.failed" and event.data.id == video.id  # type: ignore[comparison-overlap]
        with pytest.raises(openai.BadRequestError) as info:
            await sdk.videos.download_content(video.id)
        assert info.value.code == "video_not_ready"
