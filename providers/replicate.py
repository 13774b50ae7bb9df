"""The Replicate provider: predictions through the ``replicate`` client's async API.

A route's ``target`` names what to run: ``owner/name`` (a model: ``POST /v1/models/owner/name/
predictions``), ``owner/name:version`` (a version: ``POST /v1/predictions``) or
``deployments/owner/name`` (a deployment; ``options.deployment = true`` does the same for a
plain ``owner/name``). The input is the route's declarative mapping of the job's input.

**Ambiguous submits.** The client never retries a POST, and neither may the gateway when it
cannot tell whether Replicate created the prediction: a second one would be paid for twice.
A submit that failed before anything was sent (connect error, connect or pool timeout) is a
``ProviderTransientError``; one that failed after sending (read or write timeout, a dropped
connection, our own deadline) is a ``ProviderSubmitUncertain``, which is never resubmitted.
Pre-send timeouts (connect + pool, at most ``timeout``) are shorter than the deadline around
each call (``2 * timeout``), so the deadline only ever fires after the request went out.

Every call goes through ``_edge``, which translates vendor exceptions into ours (``from exc``).
The client caches its httpx client, which breaks on another event loop, so there is one
``replicate.Client`` per running loop. ``wait`` polls each request on a growing interval
(``poll_interval / 4``, then x1.5 per call, capped at ``poll_interval * 4``), batched on one
timer for every request of the provider (providers/poller.py). The prediction a poll reads
carries the outputs: the answer that says it finished is the result (no second GET).

**Webhooks.** With ``webhook_base_url`` set, a create asks for ``webhook`` (the callback URL,
with the job's id and kind) on the ``completed`` event only: one delivery per prediction, as
fal sends, and no store write for a start the gateway does not need. ``parse_webhook``
verifies and reads Replicate's deliveries (providers/replicate_webhooks.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import re
from collections.abc import AsyncIterator, Mapping
from typing import Any, Literal
from urllib.parse import urlsplit

import httpx
from replicate.client import Client
from replicate.exceptions import ReplicateError, ReplicateException

from gateway.errors import ConfigError
from providers.base import (
    Provider,
    ProviderError,
    ProviderInputError,
    ProviderLostRequest,
    ProviderRef,
    ProviderState,
    ProviderSubmitUncertain,
    ProviderTransientError,
    ProviderUnavailable,
    RouteSpec,
    StateKind,
    WebhookDelivery,
)
from providers.gate import DEFAULT_CALLS, CallGate
from providers.mapping import map_input
from providers.poller import Poller
from providers.replicate_parse import aborted, prediction_state
from providers.replicate_webhooks import ReplicateWebhooks
from providers.transport import request_host

__all__ = ["ReplicateProvider"]

Operation = Literal["submit", "get", "cancel"]

NO_TOKEN = "REPLICATE_API_TOKEN is not set"
#: the webhook events a create asks for
WEBHOOK_EVENTS = ("completed",)
_TARGET = re.compile(
    r"^(?P<deployment>deployments/)?(?P<name>[^/:\s]+/[^/:\s]+)(?::(?P<version>[^/:\s]+))?$"
)
_THROTTLED = re.compile(r"available in\s+(\d+(?:\.\d+)?)\s*second", re.IGNORECASE)
#: transport errors raised before any byte of the request was sent
_NOT_SENT = (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout, httpx.ProxyError)


class ReplicateProvider(Provider):
    """Runs routes on Replicate; see the module docstring."""

    name = "replicate"

    def __init__(
        self,
        *,
        token: str | None,
        base_url: str = "https://api.replicate.com",
        timeout: float = 30.0,
        max_calls: int = DEFAULT_CALLS,
        poll_interval: float = 1.0,
        webhook_base_url: str | None = None,
        webhook_secret: str | None = None,
    ) -> None:
        if urlsplit(base_url).scheme not in ("http", "https"):
            raise ConfigError("replicate: 'base_url' must be an http(s) URL.")
        if not timeout > 0:
            raise ConfigError("replicate: 'timeout' must be more than 0 seconds.")
        if not poll_interval > 0:
            raise ConfigError("replicate: 'poll_interval' must be more than 0 seconds.")
        self._submit_gate, self._gate = CallGate.pair(max_calls, "replicate")
        self._token = token or None
        self._base_url = base_url
        self._timeout = httpx.Timeout(timeout, connect=timeout / 2, pool=timeout / 2)
        self._deadline = 2 * timeout
        self.poll_interval = poll_interval
        self._clients: dict[asyncio.AbstractEventLoop, Client] = {}
        self.poller = Poller(
            self.status, interval=poll_interval, workers=self._gate.limit, name="replicate"
        )
        self.webhook_base_url = webhook_base_url
        self.webhooks = ReplicateWebhooks(secret=webhook_secret, fetch_secret=self._secret)

    # -- the seam ------------------------------------------------------------------------

    def availability(self, route: RouteSpec) -> tuple[bool, str | None]:
        return (True, None) if self._token else (False, NO_TOKEN)

    async def submit(
        self, route: RouteSpec, job_input: dict[str, Any], *, job_id: str, kind: str
    ) -> ProviderRef:
        deployment, name, version = _parse_target(route)
        try:
            payload = map_input(route, job_input)
        except ValueError as exc:
            raise ProviderUnavailable(f"Route {route.name}: {exc}") from exc
        client = self._client()
        callback = self.webhook_url(job_id, kind=kind)
        hooks: dict[str, Any] = {}
        if callback is not None:
            hooks = {"webhook": callback, "webhook_events_filter": list(WEBHOOK_EVENTS)}
        async with self._edge("submit"):
            if deployment:
                predictions = client.deployments.predictions
                prediction = await predictions.async_create(name, payload, **hooks)
            elif version is not None:
                prediction = await client.predictions.async_create(version, payload, **hooks)
            else:
                models = client.models.predictions
                prediction = await models.async_create(name, payload, **hooks)
        if not prediction.id:
            raise ProviderUnavailable("Replicate created a prediction without an id.")
        urls = prediction.urls or {}
        get, cancel = urls.get("get"), urls.get("cancel")
        return ProviderRef(
            prediction.id, {"get": get, "cancel": cancel, "target": route.target, "kind": kind}
        )

    async def poll(self, route: RouteSpec, ref: ProviderRef) -> ProviderState:
        client = self._client()
        async with self._edge("get"):
            try:
                prediction = await client.predictions.async_get(ref.request_id)
            except ValueError as exc:
                if aborted(exc):
                    return ProviderState(StateKind.CANCELLED)
                raise
        return prediction_state(prediction, str(ref.data.get("kind") or ""))

    async def wait(self, route: RouteSpec, ref: ProviderRef, timeout: float) -> ProviderState:
        """Polled on a growing delay, one timer for all requests; with webhooks on, the
        delivery's state as soon as it comes, and a poll only every
        ``webhook_poll_interval`` (the safety net)."""
        if self.webhooks_enabled:
            return await self.follow_webhooks(route, ref, timeout)
        return await self.poller.wait(route, ref, timeout)

    async def cancel(self, route: RouteSpec, ref: ProviderRef) -> None:
        """Cancel; a prediction Replicate no longer knows (404) or that is over is fine."""
        client = self._client()
        self.poller.forget(ref.request_id)
        with contextlib.suppress(ProviderLostRequest):
            async with self._edge("cancel"):
                # a 2xx the client cannot parse (e.g. an ``aborted`` status) was still accepted
                with contextlib.suppress(ValueError):
                    await client.predictions.async_cancel(ref.request_id)

    async def parse_webhook(
        self, headers: Mapping[str, str], body: bytes, query: Mapping[str, str] | None = None
    ) -> WebhookDelivery:
        return await self.webhooks.parse(headers, body, query or {})

    async def aclose(self) -> None:
        """Close this loop's client; drop the others (they cannot be closed from this loop)."""
        await self.poller.aclose()
        client = self._clients.pop(asyncio.get_running_loop(), None)
        self._clients.clear()
        if client is not None and (http := _cached_httpx_client(client)) is not None:
            await http.aclose()

    # -- plumbing ------------------------------------------------------------------------

    async def _secret(self) -> str:
        """The account's webhook signing secret (``whsec_...``), read from Replicate."""
        client = self._client()
        async with self._edge("get"):
            found = await client.webhooks.default.async_secret()
        return str(found.key)

    def _client(self) -> Client:
        """The running loop's client (made on first use; clients of closed loops dropped)."""
        if not self._token:
            raise ProviderUnavailable(NO_TOKEN, code="provider_auth")
        loop = asyncio.get_running_loop()
        client = self._clients.get(loop)
        if client is None:
            for stale in [other for other in self._clients if other.is_closed()]:
                del self._clients[stale]
            client = Client(api_token=self._token, base_url=self._base_url, timeout=self._timeout)
            self._clients[loop] = client
        return client

    @contextlib.asynccontextmanager
    async def _edge(self, operation: Operation) -> AsyncIterator[None]:
        """Bound one client call by the deadline and translate what it raises."""
        try:
            gate = self._submit_gate if operation == "submit" else self._gate
            async with gate(), asyncio.timeout(self._deadline):
                yield
        except ReplicateError as exc:
            raise _from_status(exc, operation) from exc
        except httpx.TransportError as exc:
            raise _from_transport(exc, operation) from exc
        except TimeoutError as exc:
            if operation == "submit":
                raise ProviderSubmitUncertain(
                    f"Replicate did not answer the submission within {self._deadline:g} s."
                ) from exc
            raise ProviderTransientError(
                f"Replicate did not answer within {self._deadline:g} s."
            ) from exc
        except (ReplicateException, httpx.HTTPError, ValueError, TypeError, KeyError) as exc:
            message = f"Replicate sent an answer the client could not read ({type(exc).__name__})."
            if operation == "submit":
                raise ProviderUnavailable(message) from exc
            raise ProviderTransientError(message) from exc


def _parse_target(route: RouteSpec) -> tuple[bool, str, str | None]:
    """``(is_deployment, "owner/name", version or None)`` for the route's target."""
    match = _TARGET.match(route.target.strip())
    if match is None:
        raise ProviderUnavailable(
            f"Route {route.name}: the target must be 'owner/name', 'owner/name:version' or "
            "'deployments/owner/name'."
        )
    deployment = bool(match["deployment"]) or route.options.get("deployment") is True
    if deployment and match["version"]:
        raise ProviderUnavailable(f"Route {route.name}: a deployment target takes no version.")
    return deployment, match["name"], match["version"]


def _from_status(exc: ReplicateError, operation: Operation) -> ProviderError:
    status = exc.status or 0
    detail = (exc.detail or exc.title or "").strip() or f"HTTP {status}"
    message = f"Replicate answered {status}: {detail}"
    if status in (400, 422) and operation == "submit":
        return ProviderInputError(detail)
    if status in (401, 403):
        return ProviderUnavailable(message, code="provider_auth")
    if status == 402:
        return ProviderUnavailable(message, code="provider_out_of_credit")
    if status == 404:
        if operation == "submit":
            return ProviderUnavailable(f"Replicate does not know this model or version: {detail}")
        return ProviderLostRequest(message)
    if status == 429:
        found = _THROTTLED.search(detail)
        return ProviderTransientError(message, retry_after=float(found[1]) if found else None)
    if status in (408, 409, 425) or status >= 500:
        return ProviderTransientError(message)
    return ProviderUnavailable(message)


def _from_transport(exc: httpx.TransportError, operation: Operation) -> ProviderError:
    name = type(exc).__name__
    if operation == "submit" and not isinstance(exc, _NOT_SENT):
        return ProviderSubmitUncertain(
            f"The submission to Replicate failed after it was sent ({name}); it may have "
            "created a prediction, so it is not sent again."
        )
    return ProviderTransientError(
        f"Could not reach Replicate at {request_host(exc) or 'its host'} ({name})."
    )


def _cached_httpx_client(client: Client) -> httpx.AsyncClient | None:
    """The httpx client ``client`` made, if any.

    replicate 1.0.7 offers no way to close its async client: it lives in the name-mangled
    private attribute ``Client.__async_client``, created on first use by ``_async_client``.
    """
    found = getattr(client, "_Client__async_client", None)
    return found if isinstance(found, httpx.AsyncClient) else None
