"""``client.videos`` through the fal and Replicate emulators: the real adapters and SDKs on
loopback, the gateway's copy of the provider's MP4 downloaded with ``download_content`` and
decoded frame by frame (the emulators' clip, ``tests/emulators/video.py``); its thumbnail and
spritesheet drawn with PyAV, and refused as a 400 when PyAV is not installed."""

from __future__ import annotations

import io
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import openai
import pytest
from PIL import Image

from gateway.api import openai_video_frames
from gateway.catalog import parse_catalog
from providers.registry import KNOWN_PROVIDERS
from tests.api.openai_support import Served, serve_gateway
from tests.emulators.control import EmulatorState
from tests.emulators.fal import create_fal_app
from tests.emulators.media import mp4_bytes
from tests.emulators.replicate import create_replicate_app
from tests.emulators.server import serve
from tests.emulators.video import FRAMES, SIZE, probe

pytestmark = pytest.mark.filterwarnings("ignore:The Sora API:DeprecationWarning")

CATALOG = {
    "models": [
        {
            "id": "ltx-fal",
            "kind": "video",
            "routes": [
                {
                    "provider": "fal",
                    "target": "fal-ai/ltx-video",
                    "options": {"size": "none"},
                    "input_map": {"duration": "", "fps": ""},
                }
            ],
        },
        {
            "id": "minimax-replicate",
            "kind": "video",
            "routes": [
                {
                    "provider": "replicate",
                    "target": "minimax/video-01",
                    "options": {"size": "none", "drop_seed": True},
                    "input_map": {"image_url": "first_frame_image", "duration": "", "fps": ""},
                }
            ],
        },
    ]
}


def picture(data: bytes) -> Image.Image:
    image = Image.open(io.BytesIO(data))
    image.load()
    return image


@dataclass
class Hosted:
    server: Served
    fal: EmulatorState
    replicate: EmulatorState


@pytest.fixture
async def hosted(tmp_path: Path) -> AsyncIterator[Hosted]:
    fal_app, replicate_app = create_fal_app(), create_replicate_app()
    async with (
        serve(fal_app) as fal_url,
        serve(replicate_app) as replicate_url,
        serve_gateway(
            tmp_path,
            parse_catalog(CATALOG, KNOWN_PROVIDERS, source="test-hosted-videos"),
            fal_key="fal-test-key",
            fal_queue_url=fal_url,
            replicate_api_token="r8-test-token",
            replicate_base_url=replicate_url,
            provider_poll_seconds=0.05,
            provider_timeout_seconds=5.0,
            fetch_allow="127.0.0.1",  # the emulators serve their outputs on loopback
        ) as server,
    ):
        fal, replicate = fal_app.state.emulator, replicate_app.state.emulator
        fal.configure(latency=0.05)
        replicate.configure(latency=0.05)
        yield Hosted(server, fal, replicate)


@pytest.mark.parametrize("model", ["ltx-fal", "minimax-replicate"])
async def test_create_and_poll_then_download_saves_the_providers_playable_mp4(
    hosted: Hosted, model: str, tmp_path: Path
) -> None:
    async with hosted.server.sdk() as sdk:
        video = await sdk.videos.create_and_poll(
            model=model, prompt="waves at dusk", poll_interval_ms=20
        )
        assert video.status == "completed", video.error
        content = await sdk.videos.download_content(video.id)
        target = tmp_path / "waves.mp4"
        content.write_to_file(target)
        assert content.response.headers["content-type"] == "video/mp4"
        data = target.read_bytes()
        assert data == mp4_bytes()  # byte for byte the provider's file
        clip = probe(data)  # and it plays: every frame decodes, the square crosses the frame
        assert (clip.size, clip.frames) == (SIZE, FRAMES)
        assert list(clip.square_x) == sorted(clip.square_x) and clip.square_x[0] < clip.square_x[-1]

    emulator = hosted.fal if model == "ltx-fal" else hosted.replicate
    [submit] = emulator.requests("submit")
    sent = submit.body if model == "ltx-fal" else submit.body["input"]
    assert sent["prompt"] == "waves at dusk" and "duration" not in sent


async def test_thumbnail_and_spritesheet_are_drawn_from_the_providers_mp4(hosted: Hosted) -> None:
    async with hosted.server.sdk() as sdk:
        video = await sdk.videos.create_and_poll(
            model="minimax-replicate", prompt="waves", poll_interval_ms=20
        )
        thumb = await sdk.videos.download_content(video.id, variant="thumbnail")
        assert thumb.response.headers["content-type"] == "image/webp"
        first = picture(thumb.content)
        assert first.format == "WEBP" and first.size == SIZE
        grey = first.convert("L")  # the first frame: the square still at the left edge
        assert grey.getpixel((7, 32)) > 200 > grey.getpixel((56, 32))  # type: ignore[operator]
        sheet = await sdk.videos.download_content(video.id, variant="spritesheet")
        assert sheet.response.headers["content-type"] == "image/jpeg"
        grid = picture(sheet.content)
        # every one of the clip's 12 frames (fewer than 16), four to a row, at full size
        assert grid.format == "JPEG" and grid.size == (4 * SIZE[0], 3 * SIZE[1])


async def test_without_pyav_an_mp4_has_only_the_video_variant(
    hosted: Hosted, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(openai_video_frames, "pyav_installed", lambda: False)
    async with hosted.server.sdk() as sdk:
        video = await sdk.videos.create_and_poll(
            model="ltx-fal", prompt="waves", poll_interval_ms=20
        )
        for variant in ("thumbnail", "spritesheet"):
            with pytest.raises(openai.BadRequestError) as info:
                await sdk.videos.download_content(video.id, variant=variant)
            assert (info.value.param, info.value.code) == ("variant", "unsupported_variant")
            assert "video/mp4" in info.value.message
        content = await sdk.videos.download_content(video.id)
        assert probe(content.content).frames == FRAMES


async def test_a_model_that_drops_the_length_refuses_seconds(hosted: Hosted) -> None:
    async with hosted.server.sdk() as sdk:
        with pytest.raises(openai.BadRequestError) as info:
            await sdk.videos.create(model="ltx-fal", prompt="waves", seconds="8")
    assert (info.value.param, info.value.code) == ("seconds", "unsupported_parameter")
    assert hosted.fal.submit_count(accepted_only=False) == 0
