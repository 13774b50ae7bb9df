"""The fal provider: fal.ai's queue API, spoken through fal-client's async client.

**The ambiguous submit.** A submit is the one call that costs money, so it is sent exactly
once per ``submit()``: the POST goes out by hand on fal-client's own httpx client, because
``AsyncClient.submit`` retries transport errors (a reset after the body went out included)
and 408/409/429 up to ten times, which may create a second paid request. Retries are the
gateway's business (its policy honours ``Retry-After``, the SDK's does not). A failure where
nothing reached fal (``ConnectError``, ``ConnectTimeout``, ``PoolTimeout``, or our own
deadline before httpcore began sending the request, seen through its ``trace`` extension)
is a ``ProviderTransientError``; anything after that (``ReadTimeout``, ``WriteTimeout``,
``RemoteProtocolError``, a 2xx answer we cannot read) is a ``ProviderSubmitUncertain``,
which the gateway never resubmits. A start deadline (``X-Fal-Request-Timeout``) is always
sent, so a request that fal accepted but could not start is not kept forever.

**The queue host.** fal-client builds queue URLs from the module constant
``fal_client.client.QUEUE_URL_FORMAT`` (``https://`` hard-coded, read from the environment
at import). :func:`configure_queue_url` sets it, so it is **process-wide**: the last
``FalProvider`` built decides the host of every fal client in the process. Plain ``http://``
and a path prefix work (a company proxy, a local emulator).

**One client per event loop.** fal-client caches an httpx client inside ``AsyncClient``; one
built on a loop fails on the next (``Event loop is closed``), so the provider keeps one
``AsyncClient`` per running loop, made on first use.

**Polling.** ``wait()`` sleeps on a per-request schedule before reading the status: the
first wait is ``poll_interval / 4``, each next one 1.5 times longer, capped at
``4 * poll_interval`` (1 s: 0.25, 0.38, 0.56, 0.84, 1.27, 1.90, 2.85, 4, 4, ...), so a
long job costs at most one status call per ``4 * poll_interval``. The schedules of the
most recent 10,000 requests are kept.

Vendor errors are translated at the edge, in ``providers/fal_errors.py``.
"""

from __future__ import annotations

import asyncio
import contextlib
import mimetypes
import re
from collections import OrderedDict
from typing import Any

import fal_client.client as fal
import httpx

from gateway.errors import ConfigError
from providers.base import (
    Output,
    Provider,
    ProviderError,
    ProviderInputError,
    ProviderRef,
    ProviderState,
    ProviderTransientError,
    ProviderUnavailable,
    RouteSpec,
    StateKind,
)
from providers.fal_errors import SendTracker, http_error, translate_errors
from providers.gate import DEFAULT_CALLS, CallGate
from providers.mapping import map_input

__all__ = ["FalProvider", "configure_queue_url", "progress_from_logs"]

DEFAULT_START_TIMEOUT = 3600.0
_URL_KEYS = ("status_url", "response_url", "cancel_url")
_PRIORITIES = ("normal", "low")
_CANCELLED_TYPE = "request_cancelled"  # fal's error_type for a request we cancelled
_MAX_SCHEDULES = 10_000
_LOG_LINES = 10  # how many of the latest log lines progress is looked for in
_PERCENT = re.compile(r"(\d{1,3}(?:\.\d+)?)\s*%")
_FRACTION = re.compile(r"(\d+)\s*/\s*(\d+)")


def configure_queue_url(url: str) -> str:
    """Point every fal client of the process at ``url``; return it normalised (one ``/``).

    Process-wide: it sets fal-client's module constant ``QUEUE_URL_FORMAT``.
    """
    try:
        parsed = httpx.URL(url)
    except httpx.InvalidURL as exc:
        raise ConfigError(f"fal: queue URL '{url}' is not valid: {exc}") from None
    if parsed.scheme not in ("http", "https") or not parsed.host or parsed.query:
        raise ConfigError(f"fal: queue URL '{url}' must be http(s)://host[/prefix].")
    normalised = str(parsed.copy_with(fragment=None)).rstrip("/") + "/"
    fal.QUEUE_URL_FORMAT = normalised
    return normalised


def progress_from_logs(logs: object) -> int | None:
    """The percentage the latest log lines report (``45%``, ``step 3/4``, ``3/4``), or None."""
    if not isinstance(logs, list):
        return None
    for line in reversed(logs[-_LOG_LINES:]):
        message = line.get("message") if isinstance(line, dict) else None
        if not isinstance(message, str):
            continue
        if (percent := _PERCENT.search(message)) and float(percent[1]) <= 100:
            return int(float(percent[1]))
        for done, total in _FRACTION.findall(message):
            if int(total) > 0 and int(done) <= int(total):
                return 100 * int(done) // int(total)
    return None


class FalProvider(Provider):
    """Runs routes on fal.ai's queue; see the module docstring."""

    name = "fal"

    def __init__(
        self,
        *,
        key: str | None,
        queue_url: str = "https://queue.fal.run",
        submit_timeout: float = 30.0,
        poll_timeout: float = 30.0,
        poll_interval: float = 1.0,
        max_calls: int = DEFAULT_CALLS,
    ) -> None:
        self._submit_gate, self._gate = CallGate.pair(max_calls, "fal")
        for label, value in (
            ("submit_timeout", submit_timeout),
            ("poll_timeout", poll_timeout),
            ("poll_interval", poll_interval),
        ):
            if not value > 0:
                raise ConfigError(f"fal: '{label}' must be more than 0 seconds.")
        self._key = key or None
        self.queue_url = configure_queue_url(queue_url)
        self._submit_timeout = submit_timeout
        self._poll_timeout = poll_timeout
        self.poll_interval = poll_interval
        self._clients: dict[asyncio.AbstractEventLoop, fal.AsyncClient] = {}
        self._delays: OrderedDict[str, float] = OrderedDict()

    # -- the seam ------------------------------------------------------------------------

    def availability(self, route: RouteSpec) -> tuple[bool, str | None]:
        return (True, None) if self._key else (False, "FAL_KEY is not set")

    async def submit(
        self, route: RouteSpec, job_input: dict[str, Any], *, job_id: str, kind: str
    ) -> ProviderRef:
        self._require_key()
        try:
            arguments = map_input(route, job_input)
        except ValueError as exc:
            raise ProviderUnavailable(f"Route {route.name}: {exc}") from exc
        url, headers = _submit_request(route)
        headers["X-Backserv-Job-Id"] = job_id  # lets an operator (and tests) match requests
        sent = SendTracker()
        with translate_errors("submit", sent):
            async with self._submit_gate(), asyncio.timeout(self._submit_timeout):
                client = await self._http()
                response = await client.post(
                    url,
                    json=arguments,
                    headers=headers,
                    timeout=self._submit_timeout,
                    extensions={"trace": sent},
                )
            if response.is_error:
                raise http_error(response, "submit")
            data = response.json()
            request_id, urls = data["request_id"], {key: data[key] for key in _URL_KEYS}
            if not all(isinstance(v, str) and v for v in (request_id, *urls.values())):
                raise ValueError("the submit answer lacks the request id or its URLs")
        return ProviderRef(request_id, {"app": route.target, **urls})

    async def poll(self, route: RouteSpec, ref: ProviderRef) -> ProviderState:
        handle = await self._handle(route, ref)
        with translate_errors("status"):
            async with self._gate(), asyncio.timeout(self._poll_timeout):
                status = await handle.status(with_logs=True)
        if isinstance(status, fal.Queued):
            position = status.position if isinstance(status.position, int) else None
            return ProviderState(StateKind.QUEUED, queue_position=position)
        if isinstance(status, fal.InProgress):
            return ProviderState(StateKind.RUNNING, progress=progress_from_logs(status.logs))
        if isinstance(status, fal.Completed):
            if status.error is None and status.error_type is None:
                return await self._result(handle)
            return await self._failed(handle, status)
        raise ProviderTransientError(f"fal: unexpected status {status!r}")

    async def wait(self, route: RouteSpec, ref: ProviderRef, timeout: float) -> ProviderState:
        await asyncio.sleep(max(0.0, min(timeout, self._next_delay(ref.request_id))))
        state = await self.poll(route, ref)
        if state.terminal:
            self._delays.pop(ref.request_id, None)
        return state

    async def cancel(self, route: RouteSpec, ref: ProviderRef) -> None:
        """PUT the cancel URL; a request already finished (400) or unknown (404) is fine."""
        handle = await self._handle(route, ref)
        with translate_errors("cancel"):
            async with self._gate(), asyncio.timeout(self._poll_timeout):
                try:
                    await handle.cancel()
                except fal.FalClientHTTPError as exc:
                    if exc.status_code not in (400, 404):
                        raise

    async def aclose(self) -> None:
        """Close this loop's client; forget the others (their loops closed, or own them)."""
        clients, self._clients = self._clients, {}
        client = clients.get(asyncio.get_running_loop())
        if client is not None:
            http = await client._client
            await http.aclose()

    # -- helpers -------------------------------------------------------------------------

    def _require_key(self) -> None:
        if not self._key:
            raise ProviderUnavailable("FAL_KEY is not set", code="provider_auth")

    async def _http(self) -> httpx.AsyncClient:
        """The httpx client of fal-client's ``AsyncClient`` for the running loop."""
        loop = asyncio.get_running_loop()
        client = self._clients.get(loop)
        if client is None:
            for other in [other for other in self._clients if other.is_closed()]:
                del self._clients[other]
            client = fal.AsyncClient(key=self._key, default_timeout=self._submit_timeout)
            self._clients[loop] = client
        http: httpx.AsyncClient = await client._client
        return http

    async def _handle(self, route: RouteSpec, ref: ProviderRef) -> fal.AsyncRequestHandle:
        """The request's handle, rebuilt from the persisted URLs (or from its id)."""
        self._require_key()
        with translate_errors("status"):
            client = await self._http()
            status, response, cancel = (ref.data.get(key) for key in _URL_KEYS)
            if all(isinstance(url, str) and url for url in (status, response, cancel)):
                return fal.AsyncRequestHandle(
                    request_id=ref.request_id,
                    response_url=str(response),
                    status_url=str(status),
                    cancel_url=str(cancel),
                    client=client,
                )
            app = str(ref.data.get("app") or route.target)
            return fal.AsyncRequestHandle.from_request_id(client, app, ref.request_id)

    async def _get_result(self, handle: fal.AsyncRequestHandle) -> httpx.Response:
        """One GET of the result (``handle.get()`` would poll the status again first)."""
        async with self._gate(), asyncio.timeout(self._poll_timeout):
            return await handle.client.get(handle.response_url, timeout=self._poll_timeout)

    async def _result(self, handle: fal.AsyncRequestHandle) -> ProviderState:
        with translate_errors("result"):
            response = await self._get_result(handle)
            if response.is_error:
                raise http_error(response, "result")
            outputs, seed = _outputs(response.json())
        return ProviderState(StateKind.SUCCEEDED, progress=100, outputs=outputs, seed=seed)

    async def _failed(self, handle: fal.AsyncRequestHandle, status: fal.Completed) -> ProviderState:
        """Classify a run that failed: bad input (by its type, or a replayed 400/422) or not."""
        if status.error_type == _CANCELLED_TYPE:
            return ProviderState(StateKind.CANCELLED)
        message = f"fal: the app failed: {status.error or status.error_type}"
        kind = (status.error_type or "").lower()
        error: ProviderError
        if "validation" in kind or "input" in kind:
            error = ProviderInputError(status.error or status.error_type)
        else:
            error = ProviderUnavailable(message)
            with contextlib.suppress(ProviderError), translate_errors("result"):
                response = await self._get_result(handle)
                if response.status_code in (400, 422):
                    error = http_error(response, "result")
        return ProviderState(StateKind.FAILED, error=error)

    def _next_delay(self, request_id: str) -> float:
        previous = self._delays.pop(request_id, None)
        first, cap = self.poll_interval / 4, self.poll_interval * 4
        delay = first if previous is None else min(previous * 1.5, cap)
        self._delays[request_id] = delay
        while len(self._delays) > _MAX_SCHEDULES:
            self._delays.popitem(last=False)
        return delay


def _submit_request(route: RouteSpec) -> tuple[str, dict[str, str]]:
    """The submit URL and fal's queue headers, from ``route.options``."""
    options = route.options
    start = options.get("start_timeout", DEFAULT_START_TIMEOUT)
    if isinstance(start, bool) or not isinstance(start, int | float) or not start > 1:
        raise ProviderUnavailable(f"Route {route.name}: 'start_timeout' must be over 1 second.")
    headers = {"X-Fal-Request-Timeout": str(float(start))}
    priority = options.get("priority")
    if priority is not None:
        if priority not in _PRIORITIES:
            raise ProviderUnavailable(f"Route {route.name}: 'priority' must be normal or low.")
        headers["X-Fal-Queue-Priority"] = priority
    if (hint := options.get("hint")) is not None:
        headers["X-Fal-Runner-Hint"] = str(hint)
    url = fal.QUEUE_URL_FORMAT + route.target.strip("/")
    if path := str(options.get("path") or "").strip("/"):
        url += "/" + path
    return url, headers


def _outputs(body: object) -> tuple[tuple[Output, ...], int | None]:
    """``images`` / ``image`` / ``video`` files as outputs, and the ``seed``."""
    if not isinstance(body, dict):
        raise ValueError("the result is not a JSON object")
    files = [(f, "image/png") for f in body.get("images") or []]
    for key, default in (("image", "image/png"), ("video", "video/mp4")):
        if body.get(key) is not None:
            files.append((body[key], default))
    outputs = tuple(_output(file, default) for file, default in files)
    if not outputs:
        raise ValueError("the result has no images and no video")
    seed = body.get("seed")
    return outputs, seed if isinstance(seed, int) and not isinstance(seed, bool) else None


def _output(file: object, default: str) -> Output:
    url = file.get("url") if isinstance(file, dict) else None
    if not isinstance(file, dict) or not isinstance(url, str) or not url:
        raise ValueError("a result file has no URL")
    content_type = file.get("content_type")
    if not isinstance(content_type, str) or not content_type:
        guessed = mimetypes.guess_type(url.partition("?")[0])[0]
        content_type = guessed if guessed and guessed.startswith(default[:6]) else default
    width, height = file.get("width"), file.get("height")
    return Output(
        content_type,
        url=url,
        width=width if isinstance(width, int) and not isinstance(width, bool) else None,
        height=height if isinstance(height, int) and not isinstance(height, bool) else None,
    )
