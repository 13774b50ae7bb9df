"""The local provider: diffusers pipelines run in this process, on this machine's GPU or CPU.

A catalog route's ``target`` is a model directory in diffusers format (a relative path
resolves against ``BACKSERV_LOCAL_MODELS_DIR``, else the working directory) and its
``options`` say how to run it: ``pipeline`` (``text2img`` | ``upscale`` | ``video``, by
default the one the job's kind needs), ``device`` (``auto`` picks cuda, then mps, then cpu),
``dtype``, ``scheduler``, ``attention_slicing``, ``cpu_offload``, and for video
``video_format`` (``gif`` | ``mp4``) and ``max_frames``.

Pipelines are loaded on first use (or at start-up, ``preload``) and cached, least recently
used evicted (``local_pipelines``). Generation runs off the event loop, in one worker thread
per device: jobs on a device run one at a time, in the order they came. The step callback
reports progress and honours a cancel at the end of the running step (``local_run``).

torch and diffusers are imported only inside functions, so this module imports without the
``local`` extra; ``availability`` then marks every local route off, with the reason.
Requests live in memory, as in the sandbox: after a restart ``poll`` raises
``ProviderLostRequest`` and the gateway submits the job again (``free_resubmit``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from dataclasses import replace
from functools import partial
from pathlib import Path
from typing import Any

from gateway.errors import ConfigError
from gateway.faults import unexpected_error
from gateway.netguard import AllowList
from providers.base import (
    Output,
    Provider,
    ProviderError,
    ProviderLostRequest,
    ProviderRef,
    ProviderState,
    ProviderUnavailable,
    RouteSpec,
    StateKind,
)
from providers.local_inputs import fetch_input
from providers.local_pipelines import (
    DTYPES,
    EXTRA_MISSING,
    LOAD_LOCK,
    LoadKey,
    LocalOptions,
    PipelineCache,
    extra_installed,
    parse_options,
    resolve_device,
    valid_device,
)
from providers.local_run import Cancelled, Work, mp4_supported, run
from providers.local_worker import DeviceWorker, LocalRequest, cpu_threads_default
from providers.retention import Retention
from providers.sandbox import Fetch

__all__ = ["LocalTorchProvider", "StepHook"]

log = logging.getLogger("backserv.providers.local")

#: the most output bytes finished requests keep for their polls; once a poll read a success,
#: its request is kept this many seconds (providers/retention.py)
KEEP_BYTES = 256 * 1024 * 1024
KEEP_DELIVERED = 5.0
#: how error messages name this provider
WHO = "the local provider"
#: called in the worker thread after every step with (request id, steps done)
StepHook = Callable[[str, int], None]


class LocalTorchProvider(Provider):
    """Runs diffusers pipelines in-process; see the module docstring."""

    name = "local"
    poll_interval = 0.5
    free_resubmit = True

    def __init__(
        self,
        *,
        models_dir: Path | None = None,
        device: str = "auto",
        dtype: str = "auto",
        max_pipelines: int = 1,
        preload: Sequence[str] = (),
        cpu_threads: int = 0,
        fetch: Fetch | None = None,
        max_input_bytes: int = 20 * 1024 * 1024,
        fetch_timeout: float = 30.0,
        keep_finished: float = 300.0,
        keep_bytes: int = KEEP_BYTES,
        keep_delivered: float = KEEP_DELIVERED,
        step_hook: StepHook | None = None,
        fetch_allow: AllowList | None = None,
    ) -> None:
        if not valid_device(device):
            raise ConfigError("local: the device must be auto, cpu, cuda, cuda:N or mps.")
        if dtype not in DTYPES:
            raise ConfigError(f"local: the dtype must be one of {', '.join(DTYPES)}.")
        if max_pipelines < 1 or cpu_threads < 0:
            raise ConfigError("local: max_pipelines must be 1 or more, cpu_threads 0 or more.")
        self._models_dir = models_dir
        self._device = device
        self._dtype = dtype
        self._cpu_threads = cpu_threads
        self._fetch = fetch
        self._max_input_bytes = max_input_bytes
        self._fetch_timeout = fetch_timeout
        self._fetch_allow = fetch_allow  # BACKSERV_FETCH_ALLOW
        self.step_hook = step_hook
        self.cache = PipelineCache(max_pipelines)
        self._workers: dict[str, DeviceWorker] = {}
        self._workers_lock = threading.Lock()
        self._devices: dict[str, str] = {}  # a device option -> the device it resolved to
        self._requests: dict[str, LocalRequest] = {}
        #: finished requests, and their outputs, are kept within bounds (providers/retention.py)
        self.retention = Retention(
            self._requests,
            keep_finished=keep_finished,
            keep_delivered=keep_delivered,
            max_bytes=keep_bytes,
        )
        self._extra: bool | None = None
        self._torch_ready = False
        self._closed = False
        #: set once every directory named in ``preload`` was loaded (or failed to)
        self.preloaded = threading.Event()
        if preload:
            threading.Thread(
                target=self._preload, args=(list(preload),), name="backserv-local-preload"
            ).start()
        else:
            self.preloaded.set()

    # -- the seam ------------------------------------------------------------------------

    def availability(self, route: RouteSpec) -> tuple[bool, str | None]:
        try:
            self._check(route, None)
        except ProviderUnavailable as exc:
            return False, exc.message
        return True, None

    async def submit(
        self, route: RouteSpec, job_input: dict[str, Any], *, job_id: str, kind: str
    ) -> ProviderRef:
        if self._closed:
            raise ProviderUnavailable("The local provider is closed.")
        options = self._check(route, kind)
        request = LocalRequest(f"local-{secrets.token_hex(12)}")
        self._requests[request.id] = request
        work = self._run(request, job_id, route, options, dict(job_input))
        request.task = asyncio.create_task(work, name=f"local {request.id}")
        request.task.add_done_callback(partial(self._task_done, request))
        return ProviderRef(request.id, {"model": str(options.path)})

    async def poll(self, route: RouteSpec, ref: ProviderRef) -> ProviderState:
        return self._deliver(self._get(ref))

    async def wait(self, route: RouteSpec, ref: ProviderRef, timeout: float) -> ProviderState:
        request = self._get(ref)
        if not request.state.terminal:
            changed = request.changed
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(max(0.0, timeout)):
                    await changed.wait()
        return self._deliver(request)

    async def cancel(self, route: RouteSpec, ref: ProviderRef) -> None:
        """Stop the request: at once if it waits, at the end of the running step if it runs."""
        request = self._requests.get(ref.request_id)
        if request is None or request.state.terminal:
            return
        request.cancel.set()
        request.end(StateKind.CANCELLED)

    async def aclose(self) -> None:
        """Stop every request (each within a step), then the workers, and unload the models."""
        self._closed = True
        for request in self._requests.values():
            request.cancel.set()
        self.retention.close()
        tasks = [r.task for r in self._requests.values() if r.task and not r.task.done()]
        if tasks:  # a model still loading cannot be interrupted: wait, but not for ever
            await asyncio.wait(tasks, timeout=30)
        with self._workers_lock:
            workers = list(self._workers.values())
        for worker in workers:
            worker.executor.shutdown(wait=False, cancel_futures=True)
        await asyncio.to_thread(self.cache.clear)

    # -- the work ------------------------------------------------------------------------

    def _check(self, route: RouteSpec, kind: str | None) -> LocalOptions:
        """The route's options, or ProviderUnavailable saying why the route cannot run."""
        if self._extra is None:
            self._extra = extra_installed()
        if not self._extra:
            raise ProviderUnavailable(EXTRA_MISSING, code="local_extra_missing")
        options = parse_options(
            route, models_dir=self._models_dir, device=self._device, dtype=self._dtype, kind=kind
        )
        if not options.path.is_dir():
            raise ProviderUnavailable(
                f"model directory {options.path} not found", code="model_not_found"
            )
        if options.video_format == "mp4" and not mp4_supported():
            raise ProviderUnavailable(
                "video_format 'mp4' needs imageio and imageio-ffmpeg: "
                "pip install imageio imageio-ffmpeg",
                code="invalid_route",
            )
        return options

    async def _run(
        self,
        request: LocalRequest,
        job_id: str,
        route: RouteSpec,
        options: LocalOptions,
        job_input: dict[str, Any],
    ) -> None:
        worker: DeviceWorker | None = None
        try:
            image = None
            if options.pipeline == "upscale" or job_input.get("image_url") is not None:
                image = await fetch_input(
                    job_input.get("image_url"),
                    "image_url",
                    fetch=self._fetch,
                    max_bytes=self._max_input_bytes,
                    timeout=self._fetch_timeout,
                    allow=self._fetch_allow,
                )
            worker = await self._worker(options.device)
            loop = asyncio.get_running_loop()
            key = LoadKey(str(options.path), worker.device, options.dtype, options.cpu_offload)
            on_step = partial(self._on_step, loop, request)
            work = Work(options, route, job_input, image, request.cancel, on_step, job_id)
            worker.waiting.append(request)
            request.update(replace(request.state, queue_position=len(worker.waiting) - 1))
            outputs, seed = await loop.run_in_executor(
                worker.executor, self._work, loop, worker, request, key, work
            )
            request.update(
                ProviderState(StateKind.SUCCEEDED, progress=100, outputs=outputs, seed=seed)
            )
        except Cancelled:
            request.end(StateKind.CANCELLED)
        except ProviderError as exc:
            request.end(StateKind.FAILED, error=exc)
        except Exception as exc:  # a shortage (EMFILE, MemoryError) is retried; never its text
            error = unexpected_error(exc, who=WHO, job_id=job_id, log=log)
            request.end(StateKind.FAILED, error=error)
        finally:
            if worker is not None:
                worker.leave(request)

    def _work(
        self,
        loop: asyncio.AbstractEventLoop,
        worker: DeviceWorker,
        request: LocalRequest,
        key: LoadKey,
        work: Work,
    ) -> tuple[tuple[Output, ...], int | None]:
        """In the worker thread: one job, start to end."""
        with contextlib.suppress(RuntimeError):  # the loop closed: nobody is listening
            loop.call_soon_threadsafe(worker.started, request)
        self._prepare_torch()
        return run(self.cache, key, work)

    def _on_step(
        self, loop: asyncio.AbstractEventLoop, request: LocalRequest, done: int, total: int
    ) -> None:
        """In the worker thread, after each step: count it and post the progress (cheaply)."""
        request.steps = done
        if self.step_hook is not None:
            self.step_hook(request.id, done)
        percent = min(99, done * 100 // max(1, total))
        if percent != request.state.progress:
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(self._progress, request, percent)

    @staticmethod
    def _progress(request: LocalRequest, percent: int) -> None:
        if request.state.kind is StateKind.RUNNING:
            request.update(ProviderState(StateKind.RUNNING, progress=percent))

    async def _worker(self, device: str) -> DeviceWorker:
        resolved = self._devices.get(device)
        if resolved is None:  # the first answer imports torch: not on the event loop
            resolved = await asyncio.to_thread(resolve_device, device)
            self._devices[device] = resolved
        return self._worker_for(resolved)

    def _worker_for(self, device: str) -> DeviceWorker:
        with self._workers_lock:
            worker = self._workers.get(device)
            if worker is None:
                worker = self._workers[device] = DeviceWorker(device)
            return worker

    def _prepare_torch(self) -> None:
        """Once, in a worker: torch's CPU threads, and no progress bars in the server's log."""
        if self._torch_ready:
            return
        with LOAD_LOCK:  # diffusers' first imports are not safe beside a load elsewhere
            import diffusers
            import torch
            import transformers

            torch.set_num_threads(self._cpu_threads or cpu_threads_default())
            diffusers.utils.logging.disable_progress_bar()
            transformers.utils.logging.disable_progress_bar()
        self._torch_ready = True

    def _preload(self, targets: list[str]) -> None:
        """In its own thread at start-up: load each directory on its device's worker."""
        futures: list[Future[Any]] = []
        for target in targets:
            try:
                options = self._check(RouteSpec(self.name, target), None)
                worker = self._worker_for(resolve_device(options.device))
                key = LoadKey(str(options.path), worker.device, options.dtype, False)
                futures.append(worker.executor.submit(self._load, key))
            except (ProviderError, RuntimeError) as exc:
                log.warning("not preloading the local model %s: %s", target, exc)
        for future in futures:
            with contextlib.suppress(Exception):  # _load logged it
                future.result()
        self.preloaded.set()

    def _load(self, key: LoadKey) -> None:
        try:
            self._prepare_torch()
            self.cache.get(key)
        except Exception as exc:
            log.warning("preloading the local model %s failed: %s", key.path, exc)
            raise

    # -- bookkeeping ---------------------------------------------------------------------

    def _get(self, ref: ProviderRef) -> LocalRequest:
        request = self._requests.get(ref.request_id)
        if request is None:
            raise ProviderLostRequest(
                f"The local provider does not know request '{ref.request_id}': it forgets "
                "requests when the gateway restarts and a while after they finish."
            )
        return request

    def _task_done(self, request: LocalRequest, task: asyncio.Task[None]) -> None:
        if not task.cancelled() and (exc := task.exception()) is not None:  # _run catches all
            error = unexpected_error(exc, who=WHO, job_id=None, log=log)
            request.end(StateKind.FAILED, error=error)
        if not request.state.terminal:  # the task was cancelled (shutdown)
            request.end(StateKind.CANCELLED)
        if not self._closed:
            self.retention.finished(request)

    def _deliver(self, request: LocalRequest) -> ProviderState:
        state = request.state
        self.retention.delivered(request, state)
        return state
