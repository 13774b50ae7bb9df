"""The local provider's upscale and video pipelines, on tiny random models built here.

These pipelines report steps through diffusers' older ``callback`` argument, so they also
pin that progress and cancel work there. Skipped without the ``local`` extra.
"""

from __future__ import annotations

import asyncio
import base64
import io
import os
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

if not os.environ.get("CI"):  # CI installs the extra: there a missing torch fails, not skips
    for _module in ("torch", "diffusers", "transformers"):
        pytest.importorskip(_module)

from providers.base import ProviderInputError, ProviderState, RouteSpec, StateKind
from providers.local_torch import LocalTorchProvider
from tests.providers.tiny_pipelines import tiny_model_dir


@pytest.fixture(scope="session")
def upscaler(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tiny_model_dir(tmp_path_factory, "upscale")


@pytest.fixture(scope="session")
def text2video(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tiny_model_dir(tmp_path_factory, "text2video")


@pytest.fixture
async def provider() -> AsyncIterator[LocalTorchProvider]:
    made = LocalTorchProvider(device="cpu")
    yield made
    await made.aclose()


def data_url(width: int, height: int) -> str:
    buffer = io.BytesIO()
    Image.new("RGB", (width, height), (180, 90, 30)).save(buffer, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()


async def run(
    provider: LocalTorchProvider, target: Path, kind: str, job: dict[str, Any], **options: Any
) -> tuple[ProviderState, list[int]]:
    spec = RouteSpec("local", str(target), options)
    ref = await provider.submit(spec, job, job_id="j", kind=kind)
    progress: list[int] = []
    async with asyncio.timeout(60):
        while not (state := await provider.wait(spec, ref, 5)).terminal:
            progress.append(state.progress or 0)
    return state, progress


@pytest.mark.parametrize(("factor", "size"), [(4, (64, 64)), (2, (32, 32))])
async def test_an_upscale_job_gives_a_png_of_the_requested_scale(
    provider: LocalTorchProvider, upscaler: Path, factor: int, size: tuple[int, int]
) -> None:
    job = {"image_url": data_url(16, 16), "scale_factor": factor, "steps": 3}

    state, progress = await run(provider, upscaler, "upscale", job)

    assert state.kind is StateKind.SUCCEEDED, state.error
    [output] = state.outputs
    assert output.data is not None and (output.width, output.height) == size
    with Image.open(io.BytesIO(output.data)) as image:
        assert image.format == "PNG" and image.size == size
    assert max(progress, default=0) > 0  # the legacy callback reports steps too
    assert state.seed is None  # an upscale job has no seed to report


async def test_an_upscale_job_without_an_image_is_an_input_error(
    provider: LocalTorchProvider, upscaler: Path
) -> None:
    state, _ = await run(provider, upscaler, "upscale", {"image_url": "data:,not an image"})

    assert isinstance(state.error, ProviderInputError) and state.error.param == "image_url"


async def test_an_upscale_whose_result_is_over_the_pixel_limit_is_refused_before_it_runs(
    provider: LocalTorchProvider, upscaler: Path
) -> None:
    steps: list[int] = []
    provider.step_hook = lambda _id, done: steps.append(done)
    job = {"image_url": data_url(2048, 2048), "scale_factor": 4, "steps": 3}

    state, _ = await run(provider, upscaler, "upscale", job)

    assert isinstance(state.error, ProviderInputError) and state.error.param == "scale_factor"
    assert "'scale_factor'" in state.error.message
    assert steps == []  # refused before the pipeline ran a step


async def test_a_video_job_gives_an_animated_gif_of_duration_times_fps_frames(
    provider: LocalTorchProvider, text2video: Path
) -> None:
    job = {"prompt": "a fox", "width": 32, "height": 32, "duration": 1, "fps": 4, "seed": 3}

    state, _ = await run(provider, text2video, "video", {**job, "steps": 2})
    again, _ = await run(provider, text2video, "video", {**job, "steps": 2})

    assert state.kind is StateKind.SUCCEEDED, state.error
    [output] = state.outputs
    assert output.content_type == "image/gif" and output.data is not None
    with Image.open(io.BytesIO(output.data)) as gif:
        assert gif.size == (32, 32) and gif.n_frames == 4
    assert again.outputs[0].data == output.data


async def test_a_video_longer_than_the_route_allows_is_an_input_error(
    provider: LocalTorchProvider, text2video: Path
) -> None:
    job = {"prompt": "a fox", "width": 32, "height": 32, "duration": 10, "fps": 8}

    state, _ = await run(provider, text2video, "video", job, max_frames=16)

    assert isinstance(state.error, ProviderInputError) and "16 frames" in state.error.message


def test_mp4_needs_imageio_or_the_route_says_so(
    provider: LocalTorchProvider, text2video: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from providers import local_torch

    monkeypatch.setattr(local_torch, "mp4_supported", lambda: False)
    spec = RouteSpec("local", str(text2video), {"pipeline": "video", "video_format": "mp4"})

    ok, reason = provider.availability(spec)

    assert not ok and reason is not None and "imageio-ffmpeg" in reason
