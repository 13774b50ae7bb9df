"""``POST /v1/provider_webhooks/{provider}``: fal's and Replicate's deliveries, verified.

A hosted provider asked for a webhook at submit (``BACKSERV_PROVIDER_WEBHOOKS``) calls this
route when a request ends. The provider verifies the delivery in its vendor's format (fal:
Ed25519 against its published keys; Replicate: Standard Webhooks under the account secret)
and reads it into the state a poll would have produced; the runner following that request
takes the state instead of polling (``Provider.deliver`` / ``Provider.wait``). A forged,
altered or replayed delivery is a 401 and changes nothing; a duplicate is harmless (the same
state again). The delivery may reach a replica other than the one following its request:
it is then relayed (PostgreSQL NOTIFY) with the state it brought, so that replica needs no
round trip to the provider either (one whose state does not fit is relayed bare, and that
replica reads the request at once). The answer is 200 as soon as the delivery is handed
over, before any job changes.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, Protocol

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from gateway.api.common import json, read_body
from gateway.errors import GatewayError, NotFound
from gateway.observability.logs import current_job_id
from gateway.observability.observer import JobObserver

log = logging.getLogger("backserv.provider_webhooks")

PATH = "/v1/provider_webhooks/{provider}"
#: the largest delivery read (fal's and Replicate's are a few KB: the result's URLs)
MAX_BODY = 1024 * 1024


class WebhookReceiver(Protocol):
    """What the route needs of a provider (``providers.base.Provider`` has it)."""

    @property
    def webhooks_enabled(self) -> bool: ...

    async def parse_webhook(
        self, headers: Mapping[str, str], body: bytes, query: Mapping[str, str] | None = None
    ) -> Any: ...

    def deliver(self, delivery: Any) -> None: ...


class ProviderWebhooksAPI:
    def __init__(
        self,
        receivers: Mapping[str, WebhookReceiver],
        relay: Callable[[str, Any], Awaitable[None]],
        observer: JobObserver | None = None,
    ) -> None:
        """``relay(provider, delivery)`` tells the other replicas (the one following the
        request may be another), with the state the delivery brought when it can."""
        self.receivers = receivers
        self.relay = relay
        self.observer = observer or JobObserver()

    def routes(self) -> list[Route]:
        return [Route(PATH, self.receive, methods=["POST"])]

    async def receive(self, request: Request) -> Response:
        name = request.path_params["provider"]
        receiver = self.receivers.get(name)
        if receiver is None or not receiver.webhooks_enabled:
            raise NotFound(f"No provider '{name}' takes webhooks here.", code="not_found")
        self.observer.webhook_arrived(name)
        try:
            body = await read_body(request, MAX_BODY)
            delivery = await receiver.parse_webhook(
                request.headers, body, dict(request.query_params)
            )
        except GatewayError as exc:
            self.observer.webhook_received(name, "rejected" if exc.status_code == 401 else "error")
            raise
        if delivery.job_id:  # the callback URL's hint: the rest of the request's lines name it
            current_job_id.set(delivery.job_id)
        log.info(
            "provider webhook: %s request %s (%s)",
            name,
            delivery.request_id,
            delivery.event,
            extra={
                "job_id": delivery.job_id,
                "provider": name,
                "provider_request_id": delivery.request_id,
            },
        )
        receiver.deliver(delivery)
        self.observer.webhook_received(name, "verified")
        await self.relay(name, delivery)
        return json({"received": True})
