from __future__ import annotations

import asyncio
import base64
import errno
import io
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
import pytest
import respx
from PIL import Image

from gateway.errors import ConfigError, ProviderResourceExhausted
from gateway.netguard import AllowList
from providers import sandbox_media as media
from providers.base import (
    ProviderError,
    ProviderInputError,
    ProviderLostRequest,
    ProviderRef,
    ProviderState,
    ProviderTransientError,
    ProviderUnavailable,
    RouteSpec,
    StateKind,
)
from providers.sandbox import SandboxProvider

Make = Callable[..., SandboxProvider]

IMAGE_INPUT = {"prompt": "a red fox", "width": 64, "height": 48, "seed": 7, "num_images": 1}


@pytest.fixture
async def make() -> AsyncIterator[Make]:
    made: list[SandboxProvider] = []

    def factory(**kwargs: Any) -> SandboxProvider:
        # respx answers for these names; an allow-listed name is connected to by name
        kwargs.setdefault("fetch_allow", AllowList.parse("img.example, down.example"))
        provider = SandboxProvider(**kwargs)
        made.append(provider)
        return provider

    yield factory
    for provider in made:
        await provider.aclose()


def route(target: str = "image", **options: Any) -> RouteSpec:
    return RouteSpec("sandbox", target, options)


def png(width: int, height: int, colour: tuple[int, int, int] = (200, 30, 30)) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (width, height), colour).save(out, format="PNG")
    return out.getvalue()


def data_url(data: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(data).decode()


async def settle(provider: SandboxProvider, spec: RouteSpec, ref: ProviderRef) -> ProviderState:
    async with asyncio.timeout(5):
        state = await provider.poll(spec, ref)
        while not state.terminal:
            state = await provider.wait(spec, ref, 1.0)
    return state


async def run(
    provider: SandboxProvider, spec: RouteSpec, job_input: dict[str, Any], job_id: str = "job-1"
) -> ProviderState:
    ref = await provider.submit(spec, job_input, job_id=job_id, kind=spec.target)
    return await settle(provider, spec, ref)


# -- success -------------------------------------------------------------------------------


async def test_image_job_succeeds_with_one_png_per_image_and_the_input_seed(make: Make) -> None:
    provider = make()
    state = await run(provider, route(), {**IMAGE_INPUT, "num_images": 3})
    assert state.kind is StateKind.SUCCEEDED
    assert state.progress == 100
    assert state.seed == 7
    assert len(state.outputs) == 3
    assert len({o.data for o in state.outputs}) == 3
    for output in state.outputs:
        assert output.content_type == "image/png"
        assert (output.width, output.height) == (64, 48)
        assert output.data is not None
        assert Image.open(io.BytesIO(output.data)).size == (64, 48)


async def test_request_ids_are_prefixed_and_unique(make: Make) -> None:
    provider = make()
    refs = [await provider.submit(route(), IMAGE_INPUT, job_id="j", kind="image") for _ in range(3)]
    assert all(ref.request_id.startswith("sbx-") for ref in refs)
    assert len({ref.request_id for ref in refs}) == 3


async def test_video_job_succeeds_with_a_gif_started_from_the_fetched_image(make: Make) -> None:
    provider = make()
    job_input = {
        "prompt": "fox",
        "width": 80,
        "height": 64,
        "duration": 1,
        "fps": 4,
        "seed": 3,
        "image_url": data_url(png(20, 20)),
    }
    state = await run(provider, route("video"), job_input)
    assert state.kind is StateKind.SUCCEEDED, state.error
    (output,) = state.outputs
    assert output.content_type == "image/gif"
    assert output.data is not None
    gif = Image.open(io.BytesIO(output.data))
    assert gif.size == (80, 64)
    assert gif.n_frames == 4


async def test_upscale_job_fetches_its_image_through_the_injected_fetch(make: Make) -> None:
    asked: list[str] = []

    async def fetch(url: str) -> bytes:
        asked.append(url)
        return png(10, 6)

    provider = make(fetch=fetch)
    spec = route("upscale")
    state = await run(
        provider, spec, {"image_url": "https://cdn.example/in.png", "scale_factor": 4}
    )
    assert asked == ["https://cdn.example/in.png"]
    assert state.kind is StateKind.SUCCEEDED, state.error
    (output,) = state.outputs
    assert (output.width, output.height) == (40, 24)
    assert state.seed is None


async def test_face_swap_job_returns_an_image_the_size_of_the_target(make: Make) -> None:
    provider = make()
    job_input = {"source_image": data_url(png(30, 40)), "target_image": data_url(png(90, 70))}
    state = await run(provider, route("face_swap"), job_input)
    assert state.kind is StateKind.SUCCEEDED, state.error
    (output,) = state.outputs
    assert (output.width, output.height) == (90, 70)


# -- progress and waiting ------------------------------------------------------------------


async def test_progress_rises_while_the_latency_elapses(make: Make) -> None:
    provider = make(latency=0.3)
    spec = route()
    ref = await provider.submit(spec, IMAGE_INPUT, job_id="j", kind="image")
    seen = [(await provider.poll(spec, ref)).progress]
    async with asyncio.timeout(5):
        while not (state := await provider.wait(spec, ref, 1.0)).terminal:
            assert state.kind is StateKind.RUNNING
            seen.append(state.progress)
    assert state.kind is StateKind.SUCCEEDED
    assert seen[0] == 0
    assert seen == sorted(seen)
    assert len({p for p in seen if p is not None and 0 < p < 100}) >= 3


async def test_route_latency_option_overrides_the_constructor(make: Make) -> None:
    provider = make(latency=30)
    start = time.monotonic()
    state = await run(provider, route(latency=0), IMAGE_INPUT)
    assert state.kind is StateKind.SUCCEEDED
    assert time.monotonic() - start < 2


async def test_wait_returns_at_the_timeout_when_nothing_changes(make: Make) -> None:
    provider = make(latency=10)
    spec = route()
    ref = await provider.submit(spec, IMAGE_INPUT, job_id="j", kind="image")
    start = time.monotonic()
    state = await provider.wait(spec, ref, 0.05)
    assert state.kind is StateKind.RUNNING
    assert time.monotonic() - start < 0.5


async def test_wait_returns_as_soon_as_the_state_changes(make: Make) -> None:
    provider = make(latency=10)
    spec = route()
    ref = await provider.submit(spec, IMAGE_INPUT, job_id="j", kind="image")
    waiting = asyncio.create_task(provider.wait(spec, ref, 30))
    await asyncio.sleep(0.02)
    await provider.cancel(spec, ref)
    async with asyncio.timeout(1):
        state = await waiting
    assert state.kind is StateKind.CANCELLED


# -- failures ------------------------------------------------------------------------------


async def test_failure_rate_one_fails_with_a_transient_error(make: Make) -> None:
    provider = make(failure_rate=1.0)
    state = await run(provider, route(), IMAGE_INPUT)
    assert state.kind is StateKind.FAILED
    assert isinstance(state.error, ProviderTransientError)
    assert state.outputs == ()


async def test_route_failure_rate_option_overrides_the_constructor(make: Make) -> None:
    provider = make(failure_rate=1.0)
    state = await run(provider, route(failure_rate=0), IMAGE_INPUT)
    assert state.kind is StateKind.SUCCEEDED


async def test_injected_failures_are_fixed_per_job_id_and_submit_so_a_retry_can_pass(
    make: Make,
) -> None:
    async def outcomes(provider: SandboxProvider) -> list[tuple[StateKind, StateKind]]:
        spec = route(failure_rate=0.5)
        tiny = {**IMAGE_INPUT, "width": 16, "height": 16}
        result = []
        for n in range(16):
            first = await run(provider, spec, tiny, job_id=f"job-{n}")
            second = await run(provider, spec, tiny, job_id=f"job-{n}")
            result.append((first.kind, second.kind))
        return result

    seen = await outcomes(make())
    assert seen == await outcomes(make())
    assert (StateKind.FAILED, StateKind.SUCCEEDED) in seen
    assert (StateKind.SUCCEEDED, StateKind.SUCCEEDED) in seen


async def test_undecodable_input_fails_the_job_with_an_input_error(make: Make) -> None:
    provider = make()
    bad = "data:image/png;base64," + base64.b64encode(b"not a png").decode()
    state = await run(provider, route("upscale"), {"image_url": bad, "scale_factor": 2})
    assert state.kind is StateKind.FAILED
    assert isinstance(state.error, ProviderInputError)


async def test_an_unexpected_exception_fails_the_job_with_a_generic_provider_error(
    make: Make,
) -> None:
    async def fetch(url: str) -> bytes:
        raise RuntimeError("boom in /srv/backserv/.venv/lib/thing.py")

    provider = make(fetch=fetch)
    state = await run(provider, route("upscale"), {"image_url": "https://x.example/a.png"})
    assert state.kind is StateKind.FAILED
    assert type(state.error) is ProviderError
    assert state.error.code == "internal_provider_error"
    assert "boom" not in state.error.message and ".venv" not in state.error.message


@pytest.mark.parametrize(
    "exc",
    [OSError(errno.EMFILE, "Too many open files", "/srv/backserv/.venv/font.ttf"), MemoryError()],
)
async def test_running_short_of_files_or_memory_is_a_retryable_error_without_the_path(
    make: Make, monkeypatch: pytest.MonkeyPatch, exc: BaseException
) -> None:
    def exhausted(image: bytes, *, scale_factor: int) -> tuple[bytes, int, int]:
        raise exc

    monkeypatch.setattr(media, "upscale", exhausted)
    state = await run(make(), route("upscale"), {"image_url": data_url(png(8, 8))})

    assert state.kind is StateKind.FAILED
    assert isinstance(state.error, ProviderResourceExhausted)
    assert "temporary resource exhaustion" in state.error.message
    assert ".venv" not in state.error.message and "Too many" not in state.error.message


async def test_an_os_error_decoding_an_input_is_retryable_not_an_input_error(
    make: Make, monkeypatch: pytest.MonkeyPatch
) -> None:
    def no_files(*args: Any, **kwargs: Any) -> Image.Image:
        raise OSError(errno.EMFILE, "Too many open files", "/srv/backserv/.venv/PIL/x.py")

    monkeypatch.setattr(Image, "open", no_files)
    state = await run(make(), route("upscale"), {"image_url": data_url(png(8, 8))})

    assert isinstance(state.error, ProviderResourceExhausted)


async def test_injected_fetch_results_over_the_limit_are_rejected(make: Make) -> None:
    async def fetch(url: str) -> bytes:
        return b"x" * 101

    provider = make(fetch=fetch, max_input_bytes=100)
    state = await run(provider, route("upscale"), {"image_url": "https://x.example/a.png"})
    assert isinstance(state.error, ProviderInputError)


async def test_unknown_target_is_unavailable(make: Make) -> None:
    with pytest.raises(ProviderUnavailable, match="no target 'music'"):
        await make().submit(route("music"), {}, job_id="j", kind="music")


@pytest.mark.parametrize("options", [{"latency": -1}, {"latency": "1"}, {"failure_rate": 1.5}])
async def test_bad_route_options_make_the_route_unavailable(
    make: Make, options: dict[str, Any]
) -> None:
    with pytest.raises(ProviderUnavailable):
        await make().submit(route(**options), IMAGE_INPUT, job_id="j", kind="image")


@pytest.mark.parametrize(
    "kwargs", [{"latency": -1}, {"failure_rate": 2}, {"max_input_bytes": 0}, {"fetch_timeout": 0}]
)
def test_bad_constructor_arguments_are_a_config_error(kwargs: dict[str, Any]) -> None:
    with pytest.raises(ConfigError):
        SandboxProvider(**kwargs)


# -- cancel, loss, eviction, close ---------------------------------------------------------


async def test_cancel_gives_cancelled_and_stops_the_work(make: Make) -> None:
    provider = make(latency=10)
    spec = route()
    ref = await provider.submit(spec, IMAGE_INPUT, job_id="j", kind="image")
    await provider.cancel(spec, ref)
    assert (await provider.poll(spec, ref)).kind is StateKind.CANCELLED
    await asyncio.sleep(0.01)
    assert (await provider.poll(spec, ref)).kind is StateKind.CANCELLED


async def test_cancel_of_an_unknown_or_finished_request_is_ignored(make: Make) -> None:
    provider = make()
    spec = route()
    await provider.cancel(spec, ProviderRef("sbx-unknown"))
    ref = await provider.submit(spec, IMAGE_INPUT, job_id="j", kind="image")
    await settle(provider, spec, ref)
    await provider.cancel(spec, ref)
    assert (await provider.poll(spec, ref)).kind is StateKind.SUCCEEDED


async def test_unknown_request_raises_lost_request(make: Make) -> None:
    provider = make()
    with pytest.raises(ProviderLostRequest):
        await provider.poll(route(), ProviderRef("sbx-from-before-a-restart"))
    with pytest.raises(ProviderLostRequest):
        await provider.wait(route(), ProviderRef("sbx-from-before-a-restart"), 1)


async def test_finished_requests_are_forgotten_after_keep_finished(make: Make) -> None:
    provider = make(keep_finished=0.05)
    spec = route()
    ref = await provider.submit(spec, IMAGE_INPUT, job_id="j", kind="image")
    await settle(provider, spec, ref)
    assert (await provider.poll(spec, ref)).kind is StateKind.SUCCEEDED
    await asyncio.sleep(0.1)
    with pytest.raises(ProviderLostRequest):
        await provider.poll(spec, ref)


async def test_aclose_cancels_running_requests_and_refuses_new_ones() -> None:
    provider = SandboxProvider(latency=10)
    spec = route()
    refs = [
        await provider.submit(spec, IMAGE_INPUT, job_id=f"j{n}", kind="image") for n in range(3)
    ]
    await asyncio.sleep(0)
    await provider.aclose()
    for ref in refs:
        assert (await provider.poll(spec, ref)).kind is StateKind.CANCELLED
    assert all(task.done() for task in asyncio.all_tasks() if task.get_name().startswith("sandbox"))
    with pytest.raises(ProviderUnavailable):
        await provider.submit(spec, IMAGE_INPUT, job_id="j", kind="image")


def test_sandbox_is_always_available() -> None:
    assert SandboxProvider().availability(route("anything")) == (True, None)


# -- the default fetcher -------------------------------------------------------------------


async def test_default_fetch_downloads_http_images(make: Make) -> None:
    provider = make()
    with respx.mock(assert_all_called=True) as mock:
        mock.get("https://img.example/cat.png").respond(200, content=png(12, 8))
        state = await run(provider, route("upscale"), {"image_url": "https://img.example/cat.png"})
    assert state.kind is StateKind.SUCCEEDED, state.error
    assert (state.outputs[0].width, state.outputs[0].height) == (24, 16)


async def test_default_fetch_rejects_a_declared_body_over_the_limit(make: Make) -> None:
    provider = make(max_input_bytes=1000)
    with respx.mock() as mock:
        mock.get("https://img.example/big.png").respond(200, content=b"x" * 1001)
        state = await run(provider, route("upscale"), {"image_url": "https://img.example/big.png"})
    assert isinstance(state.error, ProviderInputError)
    assert "larger than 1000 bytes" in state.error.message


async def test_default_fetch_stops_reading_a_streamed_body_over_the_limit(make: Make) -> None:
    sent: list[int] = []

    class Endless(httpx.AsyncByteStream):  # no Content-Length: the limit must hold mid-stream
        async def __aiter__(self) -> AsyncIterator[bytes]:
            for n in range(100):
                sent.append(n)
                yield b"x" * 400

    provider = make(max_input_bytes=1000)
    with respx.mock() as mock:
        mock.get("https://img.example/stream.png").respond(200, stream=Endless())
        url = "https://img.example/stream.png"
        state = await run(provider, route("upscale"), {"image_url": url})
    assert isinstance(state.error, ProviderInputError)
    assert "larger than 1000 bytes" in state.error.message
    assert len(sent) < 10


async def test_default_fetch_names_the_host_but_not_the_url_on_http_errors(make: Make) -> None:
    provider = make()
    url = "https://img.example/private/cat.png?token=secret"
    with respx.mock() as mock:
        mock.get(url).respond(404)
        state = await run(provider, route("upscale"), {"image_url": url})
    assert isinstance(state.error, ProviderInputError)
    assert "img.example" in state.error.message
    assert "404" in state.error.message
    assert "secret" not in state.error.message
    assert state.error.param == "image_url"


async def test_default_fetch_turns_connection_failures_into_input_errors(make: Make) -> None:
    provider = make()
    with respx.mock() as mock:
        mock.get("https://down.example/a.png").mock(side_effect=httpx.ConnectError("refused"))
        job_input = {"source_image": "https://down.example/a.png", "target_image": "x"}
        state = await run(provider, route("face_swap"), job_input)
    assert isinstance(state.error, ProviderInputError)
    assert "down.example" in state.error.message


async def test_default_fetch_rejects_urls_that_are_not_http_or_data(make: Make) -> None:
    provider = make()
    state = await run(provider, route("upscale"), {"image_url": "file:///etc/passwd"})
    assert isinstance(state.error, ProviderInputError)
