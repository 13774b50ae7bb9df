"""The fal provider: fal.ai's queue API, spoken over one plain httpx client.

**One lean client.** Submit, status, result and cancel are single requests on one httpx
client per event loop that the provider owns (providers/fal_http.py): fal-client routed each
call through two httpx clients and retried on its own. Vendor errors are translated at the
edge (providers/fal_errors.py); answers are read by providers/fal_parse.py.

**The ambiguous submit.** A submit is the one call that costs money, so it is sent exactly
once per ``submit()``; retries are the gateway's business (its policy honours
``Retry-After``). A failure where nothing reached fal (``ConnectError``, ``ConnectTimeout``,
``PoolTimeout``, or our own deadline before httpcore began sending the request, seen through
its ``trace`` extension) is a ``ProviderTransientError``; anything after that
(``ReadTimeout``, ``WriteTimeout``, ``RemoteProtocolError``, a 2xx answer we cannot read) is a
``ProviderSubmitUncertain``, which the gateway never resubmits. A start deadline
(``X-Fal-Request-Timeout``) is always sent, so a request that fal accepted but could not
start is not kept forever.

**The queue host** is the provider's own ``queue_url`` (plain ``http://`` and a path prefix
work: a company proxy, a local emulator); status, result and cancel use the URLs fal's submit
answer gave (or, for an old record without them, URLs rebuilt from the app id).

**Polling.** A status read asks for no logs (``logs=0``): fal would send every log line of
the run on every read. A route with ``options.logs = true`` asks for them, and its progress
is read from the latest lines. ``wait()`` reads the status on a per-request schedule
(``poll_interval / 4`` first, 1.5 times longer each time, at most ``4 * poll_interval``),
batched on one timer for every request of the provider (providers/poller.py). fal's status
never carries the result: a ``COMPLETED`` status costs one more GET of the result (the
webhook carries it: with webhooks on, that round trip is gone too).

**Webhooks.** With ``webhook_base_url`` set, a submit adds ``fal_webhook=<callback URL>``, and
``parse_webhook`` verifies and reads fal's deliveries (providers/fal_webhooks.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
from collections.abc import Mapping
from typing import Any

import fal_client.client as fal
import httpx

from gateway.errors import ConfigError
from gateway.lean_client import LeanHttpClient
from providers.base import (
    Provider,
    ProviderError,
    ProviderRef,
    ProviderState,
    ProviderUnavailable,
    RouteSpec,
    WebhookDelivery,
)
from providers.fal_errors import SendTracker, http_error, translate_errors
from providers.fal_http import FalHttp
from providers.fal_parse import Ended, failed, progress_from_logs, read_status, succeeded
from providers.fal_webhooks import DEFAULT_JWKS_URL, FalWebhooks
from providers.gate import DEFAULT_CALLS, CallGate
from providers.mapping import map_input
from providers.poller import Poller

__all__ = ["FalProvider", "normalise_queue_url", "progress_from_logs"]

DEFAULT_START_TIMEOUT = 3600.0
_URL_KEYS = ("status_url", "response_url", "cancel_url")
_PRIORITIES = ("normal", "low")


def normalise_queue_url(url: str) -> str:
    """``url`` checked (http(s)://host[/prefix]) and ending in one ``/``."""
    try:
        parsed = httpx.URL(url)
    except httpx.InvalidURL as exc:
        raise ConfigError(f"fal: queue URL '{url}' is not valid: {exc}") from None
    if parsed.scheme not in ("http", "https") or not parsed.host or parsed.query:
        raise ConfigError(f"fal: queue URL '{url}' must be http(s)://host[/prefix].")
    return str(parsed.copy_with(fragment=None)).rstrip("/") + "/"


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
        webhook_base_url: str | None = None,
        jwks_url: str = DEFAULT_JWKS_URL,
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
        self.queue_url = normalise_queue_url(queue_url)
        self._submit_timeout = submit_timeout
        self._poll_timeout = poll_timeout
        self.poll_interval = poll_interval
        self.webhook_base_url = webhook_base_url
        self.webhooks = FalWebhooks(jwks_url)
        self._http_client = FalHttp(self._key, max_connections=max_calls)
        self.poller = Poller(
            self.status, interval=poll_interval, workers=self._gate.limit, name="fal"
        )

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
        url, headers = _submit_request(self.queue_url, route)
        headers["X-Backserv-Job-Id"] = job_id  # lets an operator (and tests) match requests
        callback = self.webhook_url(job_id)
        sent = SendTracker()
        with translate_errors("submit", sent):
            async with self._submit_gate(), asyncio.timeout(self._submit_timeout):
                response = await self._http_client.send(
                    "POST",
                    url,
                    timeout=self._submit_timeout,
                    params={"fal_webhook": callback} if callback else None,
                    json=arguments,
                    headers=headers,
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
        status_url, response_url, _ = self._urls(route, ref)
        logs = route.options.get("logs") is True
        with translate_errors("status"):
            joiner = "&" if "?" in status_url else "?"
            response = await self._call("GET", f"{status_url}{joiner}logs={int(logs)}")
            if response.is_error:
                raise http_error(response, "status")
            found = read_status(response.json())
        if not isinstance(found, Ended):
            return found
        if found.ok:
            with translate_errors("result"):
                response = await self._call("GET", response_url)
                if response.is_error:
                    raise http_error(response, "result")
                state = succeeded(response.json())
        else:
            result: httpx.Response | None = None
            if found.needs_result:  # a failure told apart by the replayed status (400/422)
                with contextlib.suppress(ProviderError), translate_errors("result"):
                    result = await self._call("GET", response_url)
            state = failed(found.error, found.error_type, result)
        return dataclasses.replace(state, compute_seconds=found.compute_seconds)

    async def wait(self, route: RouteSpec, ref: ProviderRef, timeout: float) -> ProviderState:
        """Polled on a growing delay, one timer for all requests; with webhooks on, the
        delivery's state as soon as it comes, and a poll only every
        ``webhook_poll_interval`` (the safety net)."""
        if self.webhooks_enabled:
            return await self.follow_webhooks(route, ref, timeout)
        return await self.poller.wait(route, ref, timeout)

    async def cancel(self, route: RouteSpec, ref: ProviderRef) -> None:
        """PUT the cancel URL; a request already finished (400) or unknown (404) is fine."""
        _, _, cancel_url = self._urls(route, ref)
        with translate_errors("cancel"):
            response = await self._call("PUT", cancel_url)
            if response.is_error and response.status_code not in (400, 404):
                raise http_error(response, "cancel")

    async def parse_webhook(
        self, headers: Mapping[str, str], body: bytes, query: Mapping[str, str] | None = None
    ) -> WebhookDelivery:
        return await self.webhooks.parse(headers, body, query or {})

    async def aclose(self) -> None:
        """Stop polling; close this loop's client; forget the others (their loops closed,
        or own them)."""
        await self.poller.aclose()
        await self._http_client.aclose()

    # -- helpers -------------------------------------------------------------------------

    def _require_key(self) -> None:
        if not self._key:
            raise ProviderUnavailable("FAL_KEY is not set", code="provider_auth")

    async def _http(self) -> LeanHttpClient:
        """The running loop's client."""
        return self._http_client.client()

    async def _call(self, method: str, url: str) -> httpx.Response:
        """One status, result or cancel request, in the poll gate and its deadline."""
        async with self._gate(), asyncio.timeout(self._poll_timeout):
            return await self._http_client.send(method, url, timeout=self._poll_timeout)

    def _urls(self, route: RouteSpec, ref: ProviderRef) -> tuple[str, str, str]:
        """The request's status, result and cancel URLs: persisted, or rebuilt from its id."""
        self._require_key()
        status, response, cancel = (ref.data.get(key) for key in _URL_KEYS)
        if all(isinstance(url, str) and url for url in (status, response, cancel)):
            return str(status), str(response), str(cancel)
        with translate_errors("status"):
            app = fal.AppId.from_endpoint_id(str(ref.data.get("app") or route.target))
        prefix = f"{app.namespace}/" if app.namespace else ""
        base = f"{self.queue_url}{prefix}{app.owner}/{app.alias}/requests/{ref.request_id}"
        return f"{base}/status", base, f"{base}/cancel"


def _submit_request(queue_url: str, route: RouteSpec) -> tuple[str, dict[str, str]]:
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
    url = queue_url + route.target.strip("/")
    if path := str(options.get("path") or "").strip("/"):
        url += "/" + path
    return url, headers
