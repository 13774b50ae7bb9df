"""The local provider on a tiny random Stable Diffusion pipeline, loaded by the real code.

Skipped without the ``local`` extra; CI installs it. Nothing here downloads anything: the
pipeline is built from code and saved to a temporary directory once per session.
"""

from __future__ import annotations

import asyncio
import errno
import gc
import io
import os
import time
import weakref
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

if not os.environ.get("CI"):  # CI installs the extra: there a missing torch fails, not skips
    for _module in ("torch", "diffusers", "transformers"):
        pytest.importorskip(_module)

import torch

from gateway.errors import ProviderResourceExhausted
from providers.base import (
    ProviderInputError,
    ProviderLostRequest,
    ProviderRef,
    ProviderState,
    ProviderUnavailable,
    RouteSpec,
    StateKind,
)
from providers.local_torch import LocalTorchProvider
from tests.providers.tiny_pipelines import corrupt_copy, tiny_text2img_dir

# diffusers' Euler schedulers pass a torch tensor to np.array, which numpy 2 warns about
pytestmark = pytest.mark.filterwarnings(
    "ignore:__array__ implementation doesn't accept a copy keyword:DeprecationWarning"
)

Make = Callable[..., LocalTorchProvider]
SMALL = {"prompt": "a red fox", "width": 32, "height": 32, "steps": 2, "seed": 7, "num_images": 1}


@pytest.fixture(scope="session")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tiny_text2img_dir(tmp_path_factory)


@pytest.fixture
async def make() -> AsyncIterator[Make]:
    made: list[LocalTorchProvider] = []

    def factory(**kwargs: Any) -> LocalTorchProvider:
        provider = LocalTorchProvider(**{"device": "cpu", **kwargs})
        made.append(provider)
        return provider

    yield factory
    for provider in made:
        await provider.aclose()


def route(target: Path | str, **options: Any) -> RouteSpec:
    return RouteSpec("local", str(target), options)


async def finish(
    provider: LocalTorchProvider, spec: RouteSpec, ref: ProviderRef, timeout: float = 60
) -> tuple[ProviderState, list[ProviderState]]:
    """Follow a request to its end; return the last state and every state seen."""
    seen: list[ProviderState] = []
    async with asyncio.timeout(timeout):
        while True:
            state = await provider.wait(spec, ref, 5)
            seen.append(state)
            if state.terminal:
                return state, seen


async def generate(
    provider: LocalTorchProvider, spec: RouteSpec, **job: Any
) -> tuple[ProviderState, list[ProviderState]]:
    ref = await provider.submit(spec, {**SMALL, **job}, job_id="job-1", kind="image")
    return await finish(provider, spec, ref)


async def eventually(condition: Callable[[], bool], timeout: float = 30) -> None:
    async with asyncio.timeout(timeout):
        while True:
            if condition():
                return
            await asyncio.sleep(0.005)


def size_of(png: bytes | None) -> tuple[int, int]:
    assert png is not None and png.startswith(b"\x89PNG")
    with Image.open(io.BytesIO(png)) as image:
        return image.size


async def test_a_job_runs_queued_then_running_with_rising_progress_to_a_png(
    make: Make, model_dir: Path
) -> None:
    provider, spec = make(), route(model_dir)
    ref = await provider.submit(spec, {**SMALL, "steps": 4}, job_id="job-1", kind="image")
    first = await provider.poll(spec, ref)

    state, seen = await finish(provider, spec, ref)

    assert first.kind is StateKind.QUEUED
    assert state.kind is StateKind.SUCCEEDED, state.error
    progress = [s.progress for s in seen if s.kind is StateKind.RUNNING]
    assert progress == sorted(progress) and len(set(progress)) >= 3, progress
    [output] = state.outputs
    assert output.content_type == "image/png" and (output.width, output.height) == (32, 32)
    assert size_of(output.data) == (32, 32)
    assert state.seed == 7


async def test_the_same_seed_gives_the_same_bytes_and_another_seed_does_not(
    make: Make, model_dir: Path
) -> None:
    provider, spec = make(), route(model_dir)

    first, _ = await generate(provider, spec, seed=11)
    again, _ = await generate(provider, spec, seed=11)
    other, _ = await generate(provider, spec, seed=12)

    assert first.outputs[0].data == again.outputs[0].data
    assert first.outputs[0].data != other.outputs[0].data


async def test_several_images_and_a_non_square_size(make: Make, model_dir: Path) -> None:
    provider, spec = make(), route(model_dir)

    state, _ = await generate(provider, spec, num_images=2, width=48, height=32)

    assert state.kind is StateKind.SUCCEEDED, state.error
    assert [size_of(o.data) for o in state.outputs] == [(48, 32), (48, 32)]


async def test_a_pipeline_is_loaded_once_and_reused(
    make: Make, model_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from providers import local_pipelines

    loads: list[str] = []
    real_load = local_pipelines.load_pipeline

    def counting_load(key: Any) -> Any:
        loads.append(key.path)
        return real_load(key)

    monkeypatch.setattr(local_pipelines, "load_pipeline", counting_load)
    provider, spec = make(), route(model_dir)

    for _ in range(3):
        state, _ = await generate(provider, spec)
        assert state.kind is StateKind.SUCCEEDED

    assert loads == [str(model_dir)]


async def test_the_least_recently_used_pipeline_is_unloaded_and_its_memory_freed(
    make: Make, model_dir: Path, tmp_path: Path
) -> None:
    import shutil

    other = Path(shutil.copytree(model_dir, tmp_path / "other"))
    provider = make(max_pipelines=1)
    await generate(provider, route(model_dir))
    [first] = provider.cache.loaded()
    first_pipe = weakref.ref(provider.cache.get(first).pipe)

    state, _ = await generate(provider, route(other))
    gc.collect()

    assert state.kind is StateKind.SUCCEEDED
    assert [k.path for k in provider.cache.loaded()] == [str(other)]
    assert first_pipe() is None  # nothing holds the evicted pipeline any more


async def test_preloading_at_start_up_loads_before_the_first_job(model_dir: Path) -> None:
    provider = LocalTorchProvider(device="cpu", preload=[str(model_dir)])
    try:
        assert await asyncio.to_thread(provider.preloaded.wait, 60)
        assert [k.path for k in provider.cache.loaded()] == [str(model_dir)]
    finally:
        await provider.aclose()


async def test_a_relative_target_resolves_against_the_models_dir(
    make: Make, model_dir: Path
) -> None:
    provider = make(models_dir=model_dir.parent)

    state, _ = await generate(provider, route(model_dir.name))

    assert state.kind is StateKind.SUCCEEDED, state.error


async def test_cancel_mid_run_stops_within_one_step(make: Make, model_dir: Path) -> None:
    steps: list[int] = []
    provider, spec = make(step_hook=lambda _id, done: steps.append(done)), route(model_dir)
    ref = await provider.submit(spec, {**SMALL, "steps": 50}, job_id="j", kind="image")
    await eventually(lambda: len(steps) >= 3)

    await provider.cancel(spec, ref)
    at_cancel = len(steps)
    state = await provider.poll(spec, ref)
    request = provider._requests[ref.request_id]
    assert request.task is not None
    await asyncio.wait_for(asyncio.shield(request.task), 30)

    assert state.kind is StateKind.CANCELLED
    assert len(steps) - at_cancel <= 1, (at_cancel, steps)
    assert steps[-1] < 50
    after, _ = await generate(provider, spec)  # the worker is free for the next job
    assert after.kind is StateKind.SUCCEEDED


async def test_a_job_cancelled_while_waiting_for_the_worker_never_runs(
    make: Make, model_dir: Path
) -> None:
    started: set[str] = set()
    provider, spec = make(step_hook=lambda rid, _done: started.add(rid)), route(model_dir)
    first = await provider.submit(spec, {**SMALL, "steps": 30}, job_id="a", kind="image")
    second = await provider.submit(spec, SMALL, job_id="b", kind="image")
    await eventually(lambda: provider._requests[first.request_id].state.kind is StateKind.RUNNING)
    queued = await provider.poll(spec, second)

    await provider.cancel(spec, second)
    done, _ = await finish(provider, spec, first)

    assert queued.kind is StateKind.QUEUED and queued.queue_position == 0
    assert done.kind is StateKind.SUCCEEDED
    assert (await provider.poll(spec, second)).kind is StateKind.CANCELLED
    assert second.request_id not in started


async def test_the_event_loop_stays_responsive_during_a_generation(
    make: Make, model_dir: Path
) -> None:
    provider, spec = make(), route(model_dir)
    await generate(provider, spec)  # loaded: measure the generation, not the import
    lags: list[float] = []
    stop = asyncio.Event()

    async def ticker() -> None:
        while not stop.is_set():
            before = time.perf_counter()
            await asyncio.sleep(0.01)
            lags.append(time.perf_counter() - before - 0.01)

    task = asyncio.create_task(ticker())
    state, _ = await generate(provider, spec, steps=30, width=64, height=64)
    stop.set()
    await task

    assert state.kind is StateKind.SUCCEEDED
    assert len(lags) > 10 and max(lags) < 0.1, max(lags)


async def test_a_missing_directory_is_unavailable_and_named(make: Make, tmp_path: Path) -> None:
    provider, spec = make(), route(tmp_path / "nowhere")

    ok, reason = provider.availability(spec)
    with pytest.raises(ProviderUnavailable) as caught:
        await provider.submit(spec, SMALL, job_id="j", kind="image")

    assert not ok and reason is not None and str(tmp_path / "nowhere") in reason
    assert caught.value.code == "model_not_found"


@pytest.mark.parametrize("how", ["index", "weights"])
async def test_a_corrupt_directory_fails_clearly_and_the_worker_runs_the_next_job(
    make: Make, model_dir: Path, tmp_path: Path, how: str
) -> None:
    broken = corrupt_copy(model_dir, tmp_path / "broken", how)
    provider = make()

    state, _ = await generate(provider, route(broken))
    after, _ = await generate(provider, route(model_dir))

    assert state.kind is StateKind.FAILED
    assert isinstance(state.error, ProviderUnavailable)
    assert state.error.code == "model_load_failed"
    assert str(broken) in state.error.message
    assert after.kind is StateKind.SUCCEEDED, after.error


async def test_out_of_memory_fails_the_job_and_the_worker_runs_the_next_job(
    make: Make, model_dir: Path
) -> None:
    def out_of_memory(_id: str, done: int) -> None:
        if done == 2:
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 20.00 GiB")

    provider, spec = make(step_hook=out_of_memory), route(model_dir)

    state, _ = await generate(provider, spec, steps=5)
    provider.step_hook = None
    after, _ = await generate(provider, spec)

    assert state.kind is StateKind.FAILED
    assert isinstance(state.error, ProviderUnavailable)  # a fallback route may take the job
    assert state.error.code == "out_of_memory"
    assert "out of memory" in state.error.message
    assert after.kind is StateKind.SUCCEEDED, after.error


@pytest.mark.parametrize(
    "exc",
    [OSError(errno.EMFILE, "Too many open files", "/srv/.venv/lib/x.py"), MemoryError()],
)
async def test_running_short_of_files_or_memory_is_retryable_and_shows_no_path(
    make: Make, model_dir: Path, exc: BaseException
) -> None:
    def exhausted(_id: str, done: int) -> None:
        raise exc

    state, _ = await generate(make(step_hook=exhausted), route(model_dir))

    assert isinstance(state.error, ProviderResourceExhausted)
    assert "/srv" not in state.error.message and "Too many" not in state.error.message


async def test_an_unexpected_pipeline_error_is_generic_and_shows_no_text(
    make: Make, model_dir: Path
) -> None:
    def broken(_id: str, done: int) -> None:
        raise RuntimeError("shape mismatch in /srv/.venv/lib/diffusers/unet.py")

    state, _ = await generate(make(step_hook=broken), route(model_dir))

    assert state.kind is StateKind.FAILED and state.error is not None
    assert state.error.code == "internal_provider_error"
    assert "shape mismatch" not in state.error.message and "/srv" not in state.error.message


async def test_a_size_the_model_cannot_make_is_an_input_error(make: Make, model_dir: Path) -> None:
    state, _ = await generate(make(), route(model_dir), width=36)

    assert isinstance(state.error, ProviderInputError) and state.error.param == "width"


async def test_the_sampler_picks_the_scheduler_and_an_unknown_one_is_an_input_error(
    make: Make, model_dir: Path
) -> None:
    provider, spec = make(), route(model_dir)

    euler, _ = await generate(provider, spec, sampler="euler")
    ddim, _ = await generate(provider, spec)
    unknown, _ = await generate(provider, spec, sampler="warp-drive")

    assert euler.kind is ddim.kind is StateKind.SUCCEEDED
    assert euler.outputs[0].data != ddim.outputs[0].data
    assert isinstance(unknown.error, ProviderInputError) and unknown.error.param == "sampler"


async def test_route_options_scheduler_and_attention_slicing_are_applied(
    make: Make, model_dir: Path
) -> None:
    provider = make()
    spec = route(model_dir, scheduler="EulerAncestralDiscreteScheduler", attention_slicing=True)

    state, _ = await generate(provider, spec)

    assert state.kind is StateKind.SUCCEEDED, state.error
    [key] = provider.cache.loaded()
    entry = provider.cache.get(key)
    assert type(entry.pipe.scheduler).__name__ == "EulerAncestralDiscreteScheduler"
    assert entry.attention_slicing is True


async def test_a_route_constant_the_pipeline_does_not_take_is_a_route_error(
    make: Make, model_dir: Path
) -> None:
    spec = RouteSpec("local", str(model_dir), {}, {}, {"eta": 0.0})
    bad = RouteSpec("local", str(model_dir), {}, {}, {"no_such_argument": 1})
    provider = make()

    good, _ = await generate(provider, spec)
    state, _ = await generate(provider, bad)

    assert good.kind is StateKind.SUCCEEDED
    assert isinstance(state.error, ProviderUnavailable) and "no_such_argument" in str(state.error)


async def test_an_unknown_request_is_lost_so_the_gateway_resubmits(make: Make) -> None:
    provider = make()
    assert provider.free_resubmit is True
    with pytest.raises(ProviderLostRequest):
        await provider.poll(route("x"), ProviderRef("local-gone"))


async def test_close_stops_a_running_generation(model_dir: Path) -> None:
    steps: list[int] = []
    provider = LocalTorchProvider(device="cpu", step_hook=lambda _i, d: steps.append(d))
    spec = route(model_dir)
    ref = await provider.submit(spec, {**SMALL, "steps": 50}, job_id="j", kind="image")
    await eventually(lambda: len(steps) >= 2)

    await provider.aclose()

    assert (await provider.poll(spec, ref)).kind is StateKind.CANCELLED
    assert steps[-1] < 50
    assert provider.cache.loaded() == []


async def test_a_device_this_machine_lacks_fails_the_job_and_auto_falls_back_to_the_cpu(
    make: Make, model_dir: Path
) -> None:
    provider = make(device="auto")
    missing = "mps" if torch.cuda.is_available() else "cuda"

    state, _ = await generate(provider, route(model_dir, device=missing))
    auto, _ = await generate(provider, route(model_dir))

    assert isinstance(state.error, ProviderUnavailable)
    assert f"'{missing}' is not available" in state.error.message
    assert auto.kind is StateKind.SUCCEEDED
    if not torch.cuda.is_available() and not torch.backends.mps.is_available():
        assert [k.device for k in provider.cache.loaded()] == ["cpu"]


async def test_a_preload_that_cannot_load_is_logged_and_start_up_goes_on(
    tmp_path: Path, model_dir: Path
) -> None:
    broken = corrupt_copy(model_dir, tmp_path / "broken", "index")
    provider = LocalTorchProvider(device="cpu", preload=[str(tmp_path / "absent"), str(broken)])
    try:
        assert await asyncio.to_thread(provider.preloaded.wait, 60)
        assert provider.cache.loaded() == []
        state, _ = await generate(provider, route(model_dir))
        assert state.kind is StateKind.SUCCEEDED
    finally:
        await provider.aclose()
