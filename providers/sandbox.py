"""The sandbox provider: deterministic stand-in media, made in-process, with no account.

It is the package's fake of its own seam (as httpx ships ``MockTransport``): a route's
``target`` names the kind it emulates (``image``, ``video``, ``upscale``, ``face_swap``),
and ``route.options`` may set ``latency`` (seconds) and ``failure_rate`` (0..1) to exercise
progress reporting and retries, and ``art = "flat"`` for images of one colour (load tests:
the placeholder picture costs milliseconds of CPU, a flat one microseconds). Requests live
in memory only, so after a restart ``poll`` raises ``ProviderLostRequest`` and the gateway
resubmits, just as with a provider that forgot a request.

Memory is bounded: the renders running at once reserve their estimated peak of one budget
(``memory_budget``, ``providers/budget.py`` and ``sandbox_memory.py``), each operation
refuses a result over its pixel limit, and finished requests keep their outputs within
``keep_bytes`` and briefly once read (``providers/retention.py``).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import math
import secrets
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Sequence
from functools import partial
from typing import Any, TypeVar

import httpx

from gateway.errors import ConfigError, InvalidRequest, PayloadTooLarge
from gateway.faults import unexpected_error
from gateway.fetch import FetchFailed, fetch_guarded
from gateway.inline_media import decode_data_url
from gateway.netguard import AllowList
from providers import sandbox_edits as edits
from providers import sandbox_media as media
from providers.base import (
    Output,
    Provider,
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
from providers.budget import MemoryBudget
from providers.retention import Retention
from providers.sandbox_memory import render_cost

__all__ = ["Fetch", "SandboxProvider", "guarded_download"]

log = logging.getLogger("backserv.providers.sandbox")

#: fetches the bytes behind an input URL, or answers None to leave it to the default fetcher
Fetch = Callable[[str], Awaitable[bytes | None]]

TARGETS = ("image", "video", "upscale", "face_swap", *edits.TARGETS)
#: a flat image up to this many pixels (all outputs together) is drawn on the event loop
FLAT_INLINE_PIXELS = 256 * 256
#: the most bytes the renders running at once may hold (by their estimates)
MEMORY_BUDGET = 512 * 1024 * 1024
#: the most output bytes finished requests keep for their pollers
KEEP_BYTES = 256 * 1024 * 1024
#: seconds a finished request is kept once a poll read its success
KEEP_DELIVERED = 5.0
T = TypeVar("T")
#: how error messages name this provider
WHO = "the sandbox"
#: how many job ids the failure draw remembers the submit count of
_MAX_REMEMBERED_JOBS = 100_000


class _Request:
    """One submitted request: its current state and a way to hear when that changes."""

    __slots__ = ("changed", "evict", "id", "state", "task")

    def __init__(self, request_id: str) -> None:
        self.id = request_id
        self.state = ProviderState(StateKind.RUNNING, progress=0)
        self.changed = asyncio.Event()  # set, then replaced, at every change
        self.task: asyncio.Task[None] | None = None
        self.evict: asyncio.TimerHandle | None = None

    def update(self, state: ProviderState) -> None:
        """Move to ``state`` and wake the waiters; a terminal state is never left."""
        if self.state.terminal or state == self.state:
            return
        self.state = state
        changed, self.changed = self.changed, asyncio.Event()
        changed.set()

    def progress(self, value: int) -> None:
        self.update(ProviderState(StateKind.RUNNING, progress=value))


class SandboxProvider(Provider):
    """Renders placeholder media locally; see the module docstring."""

    name = "sandbox"
    free_resubmit = True

    def __init__(
        self,
        *,
        latency: float = 0.0,
        failure_rate: float = 0.0,
        fetch: Fetch | None = None,
        max_input_bytes: int = 20 * 1024 * 1024,
        fetch_timeout: float = 30.0,
        keep_finished: float = 300.0,
        fetch_allow: AllowList | None = None,
        memory_budget: int = MEMORY_BUDGET,
        keep_bytes: int = KEEP_BYTES,
        keep_delivered: float = KEEP_DELIVERED,
    ) -> None:
        self._latency = _latency(latency, ConfigError, "sandbox")
        self._failure_rate = _failure_rate(failure_rate, ConfigError, "sandbox")
        if max_input_bytes < 1:
            raise ConfigError("sandbox: 'max_input_bytes' must be at least 1.")
        if not fetch_timeout > 0:
            raise ConfigError("sandbox: 'fetch_timeout' must be more than 0 seconds.")
        if not (keep_finished >= 0 and keep_delivered >= 0):
            raise ConfigError("sandbox: 'keep_finished' must be 0 seconds or more.")
        if memory_budget < 1 or keep_bytes < 0:
            raise ConfigError("sandbox: the memory budget must be at least 1 byte.")
        self._fetch = fetch
        self._max_input_bytes = max_input_bytes
        self._fetch_timeout = fetch_timeout
        #: non-public hosts and networks inputs may be fetched from (BACKSERV_FETCH_ALLOW)
        self._fetch_allow = fetch_allow or AllowList()
        self._requests: dict[str, _Request] = {}
        self.retention = Retention(
            self._requests,
            keep_finished=keep_finished,
            keep_delivered=keep_delivered,
            max_bytes=keep_bytes,
        )
        #: what the renders running now may hold at most, by their estimates
        self.budget = MemoryBudget(memory_budget)
        self._submits: OrderedDict[str, int] = OrderedDict()
        self._closed = False

    # -- the seam ------------------------------------------------------------------------

    async def submit(
        self, route: RouteSpec, job_input: dict[str, Any], *, job_id: str, kind: str
    ) -> ProviderRef:
        if self._closed:
            raise ProviderUnavailable("The sandbox provider is closed.")
        if route.target not in TARGETS:
            raise ProviderUnavailable(
                f"Route {route.name}: the sandbox has no target '{route.target}' "
                f"(it has {', '.join(TARGETS)})."
            )
        options = route.options
        latency = _latency(options.get("latency", self._latency), ProviderUnavailable, route.name)
        failure_rate = _failure_rate(
            options.get("failure_rate", self._failure_rate), ProviderUnavailable, route.name
        )
        fail = _draw(job_id, self._count_submit(job_id)) < failure_rate
        request = _Request(f"sbx-{secrets.token_hex(12)}")
        self._requests[request.id] = request
        flat = options.get("art") == "flat"
        work = self._run(request, job_id, route.target, dict(job_input), latency, fail, flat)
        request.task = asyncio.create_task(work, name=f"sandbox {request.id}")
        request.task.add_done_callback(partial(self._task_done, request))
        return ProviderRef(request.id, {"target": route.target})

    async def poll(self, route: RouteSpec, ref: ProviderRef) -> ProviderState:
        request = self._get(ref)
        return self._deliver(request)

    async def wait(self, route: RouteSpec, ref: ProviderRef, timeout: float) -> ProviderState:
        request = self._get(ref)
        if not request.state.terminal:
            changed = request.changed
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(max(0.0, timeout)):
                    await changed.wait()
        return self._deliver(request)  # not re-read from the table: it may have gone since

    async def cancel(self, route: RouteSpec, ref: ProviderRef) -> None:
        request = self._requests.get(ref.request_id)
        if request is None or request.state.terminal:
            return
        request.update(ProviderState(StateKind.CANCELLED, progress=request.state.progress))
        if request.task is not None:
            request.task.cancel()

    def availability(self, route: RouteSpec) -> tuple[bool, str | None]:
        return True, None

    async def aclose(self) -> None:
        """Cancel every running request and wait for its task to end."""
        self._closed = True
        tasks = [r.task for r in self._requests.values() if r.task and not r.task.done()]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self.retention.close()

    # -- the work ------------------------------------------------------------------------

    async def _run(
        self,
        request: _Request,
        job_id: str,
        target: str,
        job_input: dict[str, Any],
        latency: float,
        fail: bool,
        flat: bool = False,
    ) -> None:
        try:
            await _advance(request, latency)
            if fail:
                raise ProviderTransientError("sandbox injected failure")
            outputs, seed = await self._render(target, job_input, flat)
            request.update(
                ProviderState(StateKind.SUCCEEDED, progress=100, outputs=outputs, seed=seed)
            )
        except asyncio.CancelledError:
            request.update(ProviderState(StateKind.CANCELLED, progress=request.state.progress))
            raise
        except ProviderError as exc:
            request.update(_failed(request, exc))
        except Exception as exc:  # a shortage (EMFILE, MemoryError) is retried; never its text
            request.update(_failed(request, unexpected_error(exc, who=WHO, job_id=job_id, log=log)))

    async def _render(
        self, target: str, job_input: dict[str, Any], flat: bool = False
    ) -> tuple[tuple[Output, ...], int | None]:
        heavy = _Heavy(self.budget, target, job_input)
        if target in edits.TARGETS:  # the Tasks API's kinds (providers/sandbox_edits.py)
            return await edits.render(target, job_input, self._input, heavy)
        if target == "image":
            prompt, negative = _text(job_input, "prompt"), job_input.get("negative_prompt")
            seed, count = _int(job_input, "seed", 0), _int(job_input, "num_images", 1)
            width, height = _int(job_input, "width", 1024), _int(job_input, "height", 1024)
            if not 1 <= count <= 16:
                raise ProviderInputError("'num_images' must be 1 to 16.", param="num_images")
            render = partial(
                media.render_flat if flat else media.render_image,
                prompt,
                seed=seed,
                width=width,
                height=height,
                negative_prompt=negative if isinstance(negative, str) else None,
            )
            if flat and width * height * count <= FLAT_INLINE_PIXELS:
                # microseconds of work: a thread hand-off would cost more than the image
                pngs = [render(index=i) for i in range(count)]
            else:
                pngs = await heavy([], lambda: [render(index=i) for i in range(count)])
            images = tuple(Output("image/png", data=p, width=width, height=height) for p in pngs)
            return images, seed
        if target == "video":
            seed = _int(job_input, "seed", 0)
            width, height = _int(job_input, "width", 512), _int(job_input, "height", 512)
            url = job_input.get("image_url")
            first = None if url is None else await self._input(url, "image_url")
            video = partial(
                media.render_video,
                _text(job_input, "prompt"),
                seed=seed,
                width=width,
                height=height,
                duration=_int(job_input, "duration", 4),
                fps=_int(job_input, "fps", 8),
                first_frame=first,
            )
            gif = await heavy([] if first is None else [first], video)
            return (Output("image/gif", data=gif, width=width, height=height),), seed
        if target == "upscale":
            image = await self._input(job_input.get("image_url"), "image_url")
            factor = _int(job_input, "scale_factor", 2)
            upscale = partial(media.upscale, image, scale_factor=factor)
            png, width, height = await heavy([image], upscale)
        else:
            source = await self._input(job_input.get("source_image"), "source_image")
            target_image = await self._input(job_input.get("target_image"), "target_image")
            swap = partial(media.face_swap, source, target_image)
            png, width, height = await heavy([source, target_image], swap)
        return (Output("image/png", data=png, width=width, height=height),), None

    async def _input(self, url: object, param: str) -> bytes:
        """The bytes behind an input URL: the injected ``fetch`` first, then the default."""
        if not isinstance(url, str) or not url:
            raise ProviderInputError(f"'{param}' must be a URL.", param=param)
        data = await self._fetch(url) if self._fetch else None
        if data is None:
            data = await self._download(url, param)
        if len(data) > self._max_input_bytes:
            raise ProviderInputError(self._too_large(param), param=param)
        return data

    async def _download(self, url: str, param: str) -> bytes:
        scheme = url.partition(":")[0].lower()
        if scheme == "data":
            return decode_inline(url, param, max_bytes=self._max_input_bytes)
        if scheme not in ("http", "https"):
            raise ProviderInputError(f"'{param}' must be an http(s) or data: URL.", param=param)
        return await guarded_download(
            url,
            param,
            allow=self._fetch_allow,
            max_bytes=self._max_input_bytes,
            timeout=self._fetch_timeout,
        )

    # -- bookkeeping ---------------------------------------------------------------------

    def _get(self, ref: ProviderRef) -> _Request:
        request = self._requests.get(ref.request_id)
        if request is None:
            raise ProviderLostRequest(
                f"The sandbox does not know request '{ref.request_id}': it forgets requests "
                "when the gateway restarts and a while after they finish."
            )
        return request

    def _count_submit(self, job_id: str) -> int:
        """How many times ``job_id`` has been submitted, this time included."""
        count = self._submits.pop(job_id, 0) + 1
        self._submits[job_id] = count
        while len(self._submits) > _MAX_REMEMBERED_JOBS:
            self._submits.popitem(last=False)
        return count

    def _task_done(self, request: _Request, task: asyncio.Task[None]) -> None:
        if not task.cancelled() and (exc := task.exception()) is not None:  # _run catches all
            request.update(_failed(request, unexpected_error(exc, who=WHO, job_id=None, log=log)))
        if not request.state.terminal:  # cancelled before it ever ran
            request.update(ProviderState(StateKind.CANCELLED, progress=request.state.progress))
        if not self._closed:
            self.retention.finished(request)

    def _deliver(self, request: _Request) -> ProviderState:
        state = request.state
        self.retention.delivered(request, state)
        return state

    def _too_large(self, param: str) -> str:
        return f"'{param}' is larger than {self._max_input_bytes} bytes."


class _Heavy:
    """Runs one job's image work in a thread, within the sandbox's memory budget: it
    reserves the render's estimated peak (``sandbox_memory.render_cost``) first."""

    def __init__(self, budget: MemoryBudget, target: str, job_input: dict[str, Any]) -> None:
        self.budget, self.target, self.job_input = budget, target, job_input

    async def __call__(self, images: Sequence[bytes], work: Callable[[], T], /) -> T:
        cost = render_cost(self.target, self.job_input, images)
        return await self.budget.run(cost, work)


async def _advance(request: _Request, latency: float) -> None:
    """Raise the progress from 0 to 99 over ``latency`` seconds, a few times a second."""
    if latency <= 0:
        return
    loop = asyncio.get_running_loop()
    start, step = loop.time(), max(latency / 10, 0.05)
    while (elapsed := loop.time() - start) < latency:
        request.progress(min(99, int(99 * elapsed / latency)))
        await asyncio.sleep(min(step, latency - elapsed))
    request.progress(99)


def _failed(request: _Request, error: ProviderError) -> ProviderState:
    return ProviderState(StateKind.FAILED, progress=request.state.progress, error=error)


def _draw(job_id: str, submit: int) -> float:
    """A number in [0, 1) fixed by the job id and which submit of that job this is."""
    digest = hashlib.sha256(f"{job_id}\x00{submit}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def _latency(value: object, error: type[Exception], where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise error(f"{where}: 'latency' must be a number of seconds.")
    if not (math.isfinite(value) and value >= 0):
        raise error(f"{where}: 'latency' must be 0 seconds or more.")
    return float(value)


def _failure_rate(value: object, error: type[Exception], where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value <= 1:
        raise error(f"{where}: 'failure_rate' must be a number from 0 to 1.")
    return float(value)


def _int(job_input: dict[str, Any], key: str, default: int) -> int:
    value = job_input.get(key)
    if value is None:
        return default
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, bool) or not isinstance(value, int):
        raise ProviderInputError(f"'{key}' must be an integer.", param=key)
    return value


def _text(job_input: dict[str, Any], key: str) -> str:
    value = job_input.get(key)
    if not isinstance(value, str) or not value:
        raise ProviderInputError(f"'{key}' must be a non-empty string.", param=key)
    return value


def decode_inline(url: str, param: str, *, max_bytes: int) -> bytes:
    """The image in a ``data:`` input, through the gateway's one decoder
    (``gateway.inline_media``: size limit, strict base64, PNG/JPEG/WebP/GIF by content);
    every failure the client's input error naming ``param``."""
    try:
        return decode_data_url(url, param=param, max_bytes=max_bytes, image=True).data
    except (InvalidRequest, PayloadTooLarge) as exc:
        raise ProviderInputError(exc.message, param=param) from None


async def guarded_download(
    url: str, param: str, *, allow: AllowList, max_bytes: int, timeout: float
) -> bytes:
    """An input image over http(s), through the SSRF guard; every failure the client's
    input error naming ``param`` (and the host, never the URL: it may hold a token)."""
    try:
        data, _ = await fetch_guarded(
            url, allow=allow, max_bytes=max_bytes, timeout=timeout, param=param
        )
    except InvalidRequest as exc:  # not a URL, a refused address, a name that does not resolve
        raise ProviderInputError(exc.message, param=param) from None
    except FetchFailed as exc:
        if exc.reason == "too_large":
            raise ProviderInputError(
                f"'{param}' is larger than {max_bytes} bytes.", param=param
            ) from None
        if exc.reason == "timeout":
            host = _host(url)
            raise ProviderInputError(
                f"Fetching '{param}' from {host} took more than {timeout:g} s.", param=param
            ) from None
        raise ProviderInputError(f"Fetching '{param}': {exc.message}.", param=param) from exc
    return data


def _host(url: str) -> str:
    try:
        return httpx.URL(url).host or "?"
    except (httpx.InvalidURL, ValueError):  # ValueError: idna's errors, read from .host
        return "?"
