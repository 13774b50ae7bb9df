"""The sandbox's memory is bounded: what finished requests keep, what one render may make,
and what the renders running at once may hold."""

from __future__ import annotations

import asyncio
import io
import threading
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from PIL import Image

from gateway.errors import ProviderInputError, ProviderLostRequest
from providers import sandbox_media as media
from providers.base import ProviderRef, ProviderState, RouteSpec, StateKind
from providers.sandbox import SandboxProvider
from providers.sandbox_memory import BYTES_PER_PIXEL, render_cost
from tests.api.support import data_url, running
from tests.conftest import AUTH_A, make_settings

Make = Callable[..., SandboxProvider]
IMAGE = {"prompt": "a red fox", "width": 128, "height": 128, "seed": 1, "num_images": 1}


@pytest.fixture
async def make() -> AsyncIterator[Make]:
    made: list[SandboxProvider] = []

    def factory(**kwargs: Any) -> SandboxProvider:
        made.append(SandboxProvider(**kwargs))
        return made[-1]

    yield factory
    for provider in made:
        await provider.aclose()


def solid_png(side: int) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (side, side), (30, 160, 90)).save(out, format="PNG")
    return out.getvalue()


async def finish(provider: SandboxProvider, spec: RouteSpec, ref: ProviderRef) -> ProviderState:
    async with asyncio.timeout(10):
        state = await provider.wait(spec, ref, 5)
        while not state.terminal:
            state = await provider.wait(spec, ref, 5)
    return state


# -- what finished requests keep ----------------------------------------------------------------


async def test_finished_requests_keep_at_most_keep_bytes_of_outputs(make: Make) -> None:
    provider = make(keep_bytes=50_000, keep_delivered=300)
    spec = RouteSpec("sandbox", "image")
    made = 0
    refs = []
    for n in range(40):
        ref = await provider.submit(spec, {**IMAGE, "seed": n}, job_id=f"j{n}", kind="image")
        state = await finish(provider, spec, ref)
        made += sum(len(o.data or b"") for o in state.outputs)
        refs.append(ref)
        assert provider.retention.retained_bytes <= 50_000

    assert made > 5 * 50_000  # far more was made than is kept
    assert (await provider.poll(spec, refs[-1])).kind is StateKind.SUCCEEDED  # the newest
    with pytest.raises(ProviderLostRequest):  # the oldest went first: the gateway reruns it
        await provider.poll(spec, refs[0])


async def test_a_success_once_read_is_forgotten_soon_and_its_bytes_freed(make: Make) -> None:
    provider = make(keep_delivered=0.05)
    spec = RouteSpec("sandbox", "image")
    ref = await provider.submit(spec, IMAGE, job_id="j", kind="image")
    state = await finish(provider, spec, ref)
    await asyncio.sleep(0.01)  # the request's task has ended, its outputs are counted
    assert state.kind is StateKind.SUCCEEDED and provider.retention.retained_bytes > 0

    await asyncio.sleep(0.15)

    assert provider.retention.retained_bytes == 0
    with pytest.raises(ProviderLostRequest):
        await provider.poll(spec, ref)


async def test_a_success_not_read_yet_is_kept_for_its_poll(make: Make) -> None:
    provider = make(keep_delivered=0.01)
    spec = RouteSpec("sandbox", "image")
    ref = await provider.submit(spec, IMAGE, job_id="j", kind="image")
    async with asyncio.timeout(5):
        while True:  # finished, and nobody has read it
            if provider.retention.retained_bytes:
                break
            await asyncio.sleep(0.01)
    await asyncio.sleep(0.1)

    assert (await provider.poll(spec, ref)).kind is StateKind.SUCCEEDED


# -- what one render may make -------------------------------------------------------------------


def test_an_upscale_over_the_output_limit_is_refused_from_the_header_naming_the_field(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def never(*args: Any, **kwargs: Any) -> Image.Image:
        raise AssertionError("the image must not be decoded")

    monkeypatch.setattr(media, "_open", never)
    small = solid_png(2048)
    assert len(small) < 64 * 1024  # a tiny file asking for 8192x8192

    with pytest.raises(ProviderInputError, match="'scale_factor'") as caught:
        media.upscale(small, scale_factor=4)

    assert caught.value.param == "scale_factor"
    assert str(media.MAX_OUTPUT_PIXELS) in caught.value.message


async def test_an_oversized_upscale_job_fails_with_an_input_error_naming_scale_factor(
    tmp_path: Path,
) -> None:
    image = data_url(solid_png(2048))
    body = {"model": "sandbox-upscale", "input": {"image_url": image, "scale_factor": 4}}
    async with running(make_settings(tmp_path, sandbox_latency=0.0)) as (client, _gateway):
        resp = await client.post("/v1/jobs", json=body, headers=AUTH_A)
        assert resp.status_code == 202, resp.text
        job = await settled(client, resp.json()["id"])

    assert job["status"] == "FAILED"
    assert job["error"]["code"] == "invalid_input"
    assert "'scale_factor'" in job["error"]["message"]


async def settled(client: httpx.AsyncClient, job_id: str) -> dict[str, Any]:
    async with asyncio.timeout(20):
        while True:
            job: dict[str, Any] = (
                await client.get(f"/v1/jobs/{job_id}?wait=5", headers=AUTH_A)
            ).json()
            if job["status"] not in ("QUEUED", "PROCESSING"):
                return job


def test_a_video_of_large_frames_gets_fewer_frames() -> None:
    assert media.frame_count(4, 8, 512, 512) == 32
    assert media.frame_count(60, 60, 512, 512) == media.MAX_FRAMES
    assert media.frame_count(4, 8, 4096, 4096) == 4
    assert media.frame_count(4, 8, 4096, 4096) * 4096 * 4096 <= media.MAX_VIDEO_PIXELS


def test_the_estimate_of_an_upscale_counts_its_input_and_output_pixels() -> None:
    cost = render_cost("upscale", {"scale_factor": 2}, [solid_png(1024)])

    assert cost == BYTES_PER_PIXEL * (1024 * 1024 + 2048 * 2048)


# -- what the renders running at once hold ------------------------------------------------------


async def test_concurrent_heavy_renders_are_bounded_by_the_memory_budget(
    make: Make, monkeypatch: pytest.MonkeyPatch
) -> None:
    lock = threading.Lock()
    now = {"running": 0, "most": 0}

    def slow_upscale(image: bytes, *, scale_factor: int) -> tuple[bytes, int, int]:
        with lock:
            now["running"] += 1
            now["most"] = max(now["most"], now["running"])
        time.sleep(0.1)
        with lock:
            now["running"] -= 1
        return solid_png(8), 8, 8

    monkeypatch.setattr(media, "upscale", slow_upscale)
    image = solid_png(64)
    one = render_cost("upscale", {"scale_factor": 2}, [image])
    provider = make(memory_budget=2 * one)
    spec = RouteSpec("sandbox", "upscale")
    job = {"image_url": data_url(image), "scale_factor": 2}

    refs = [await provider.submit(spec, job, job_id=f"j{n}", kind="upscale") for n in range(6)]
    states = [await finish(provider, spec, ref) for ref in refs]

    assert all(s.kind is StateKind.SUCCEEDED for s in states), states
    assert now["most"] == 2
    assert provider.budget.peak <= 2 * one
