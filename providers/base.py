"""The provider seam: the only thing that talks to an inference backend.

The interface is split in three so a job survives a gateway restart without being paid for
twice: ``submit`` returns the provider's request reference, which the scheduler persists
before anything else happens; ``poll`` reads the request's state; ``cancel`` stops it.
Providers translate vendor errors at the edge into ``gateway.errors.ProviderError``
subclasses; nothing above them sees a vendor exception.

**Webhooks.** A hosted provider can be asked to call the gateway back when a request ends,
instead of being polled: built with ``webhook_base_url`` (the gateway's public URL), its
``submit`` gives the provider ``webhook_url(job_id)``, under ``PROVIDER_WEBHOOK_PATH`` (one
ingress route per provider). The route hands each delivery to ``parse_webhook``, which
verifies it in the vendor's own format (a bad or replayed signature raises
``WebhookRejected``, a 401) and returns a ``WebhookDelivery``: the request's id and the
``ProviderState`` a poll would have produced. Polling stays the safety net.
"""

from __future__ import annotations

import asyncio
import time
from abc import ABC, abstractmethod
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from enum import StrEnum
from typing import Any
from urllib.parse import urlencode

from gateway.errors import (
    NotFound,
    ProviderError,
    ProviderInputError,
    ProviderLostRequest,
    ProviderSubmitUncertain,
    ProviderTransientError,
    ProviderUnavailable,
)
from providers.deliveries import Deliveries
from providers.polls import PollCounts

__all__ = [
    "PROVIDER_WEBHOOK_PATH",
    "WEBHOOK_JOB_PARAM",
    "Output",
    "Provider",
    "ProviderError",
    "ProviderInputError",
    "ProviderLostRequest",
    "ProviderRef",
    "ProviderState",
    "ProviderSubmitUncertain",
    "ProviderTransientError",
    "ProviderUnavailable",
    "RouteSpec",
    "StateKind",
    "WebhookDelivery",
]

#: requests whose last polled state a provider keeps between safety-net polls
MAX_REMEMBERED = 100_000
#: the gateway's ingress route for a provider's webhooks (``{provider}``: ``Provider.name``)
PROVIDER_WEBHOOK_PATH = "/v1/provider_webhooks/{provider}"
#: the query parameter of a callback URL that names the job (a hint: no signature covers it)
WEBHOOK_JOB_PARAM = "job"


@dataclass(frozen=True)
class RouteSpec:
    """One way to run a model: which provider, which target there, and how to map input."""

    provider: str
    target: str
    options: dict[str, Any] = field(default_factory=dict)
    input_map: dict[str, str] = field(default_factory=dict)
    constants: dict[str, Any] = field(default_factory=dict)

    @property
    def name(self) -> str:
        return f"{self.provider}:{self.target}"

    def to_dict(self) -> dict[str, Any]:
        return {
            "provider": self.provider,
            "target": self.target,
            "options": dict(self.options),
            "input_map": dict(self.input_map),
            "constants": dict(self.constants),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RouteSpec:
        return cls(
            str(data["provider"]),
            str(data["target"]),
            dict(data.get("options") or {}),
            dict(data.get("input_map") or {}),
            dict(data.get("constants") or {}),
        )


@dataclass(frozen=True)
class ProviderRef:
    """What the provider gave back on submit; persisted so polling can resume after a crash."""

    request_id: str
    data: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Output:
    """One produced file: either its bytes, or a URL the gateway copies into its storage."""

    content_type: str
    data: bytes | None = None
    url: str | None = None
    width: int | None = None
    height: int | None = None
    extra: dict[str, Any] = field(default_factory=dict)


class StateKind(StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"


@dataclass(frozen=True)
class ProviderState:
    kind: StateKind
    progress: int | None = None
    queue_position: int | None = None
    outputs: tuple[Output, ...] = ()
    seed: int | None = None
    error: ProviderError | None = None
    #: the seconds of compute the provider reports it billed for the request, once it ended
    #: (Replicate's ``metrics.predict_time``, fal's ``metrics.inference_time``); None: unsaid
    compute_seconds: float | None = None
    #: how the gateway learned it: ``poll`` (a status read) or ``webhook`` (a delivery)
    via: str = "poll"

    @property
    def terminal(self) -> bool:
        return self.kind in (StateKind.SUCCEEDED, StateKind.FAILED, StateKind.CANCELLED)


@dataclass(frozen=True)
class WebhookDelivery:
    """A provider's webhook delivery, verified: which request it is about and its state.

    ``state`` is what ``poll`` would have returned at that moment, or None when the delivery
    says the request changed but carries nothing readable (poll it now). ``delivery_id``
    names the delivery in logs and metrics (Replicate's ``webhook-id``, kept by its retries;
    fal sends none: its request id and timestamp). ``event`` is the vendor's event
    (``completed``; Replicate also ``start``, ``output``, ``logs``). ``job_id`` comes from the
    callback URL's query: no signature covers it, so it is a hint, to be trusted only for a
    job whose provider reference has this ``request_id``.
    """

    request_id: str
    state: ProviderState | None
    delivery_id: str
    event: str = "completed"
    job_id: str | None = None


class Provider(ABC):
    """A backend that runs jobs. Subclasses implement ``submit``, ``poll`` and ``cancel``."""

    #: the name routes use in the catalog (``provider = "..."``)
    name: str = ""
    #: seconds between polls when the provider offers nothing better
    poll_interval: float = 1.0
    #: whether a request the provider forgot (ProviderLostRequest) may simply be submitted
    #: again: true where a run costs nothing (sandbox, local); a paid provider fails the job
    free_resubmit: bool = False
    #: the gateway's public base URL when the provider is asked to call it back on its
    #: requests' ends (``BACKSERV_PROVIDER_WEBHOOKS``); None: it is polled only
    webhook_base_url: str | None = None
    #: with webhooks on, a request is still polled this often: the safety net that finds a
    #: lost delivery (``BACKSERV_PROVIDER_WEBHOOK_POLL_SECONDS``)
    webhook_poll_interval: float = 30.0

    @property
    def deliveries(self) -> Deliveries[WebhookDelivery]:
        """The verified deliveries not yet taken by the runner (see providers/deliveries.py)."""
        box = self.__dict__.get("_deliveries")
        if box is None:
            box = self.__dict__["_deliveries"] = Deliveries[WebhookDelivery]()
        return box

    def deliver(self, delivery: WebhookDelivery) -> None:
        """A verified delivery (from ``parse_webhook``) for the runner following its request."""
        self.deliveries.put(delivery)

    @property
    def _polled(self) -> OrderedDict[str, tuple[float, ProviderState]]:
        """request id -> (when, state) of its last safety-net poll (with webhooks on)."""
        polled: OrderedDict[str, tuple[float, ProviderState]] = self.__dict__.setdefault(
            "_polled_states", OrderedDict()
        )
        return polled

    @property
    def poll_counts(self) -> PollCounts:
        """The status reads made (see providers/polls.py)."""
        counts = self.__dict__.get("_poll_counts")
        if counts is None:
            counts = self.__dict__["_poll_counts"] = PollCounts()
        return counts

    async def status(self, route: RouteSpec, ref: ProviderRef) -> ProviderState:
        """One status read (``poll``), counted: what the runner and ``wait`` call."""
        self.poll_counts.add(ref.request_id)
        return await self.poll(route, ref)

    async def follow_webhooks(
        self, route: RouteSpec, ref: ProviderRef, timeout: float
    ) -> ProviderState:
        """``wait`` with webhooks on: the state a delivery brought for ``ref`` as soon as it
        comes (waiting up to ``timeout``; a delivery without a readable state is read at
        once), else, while the safety-net poll is not due, the state last polled; else a
        poll (``webhook_poll_interval``), remembered until the next one is due."""
        polled = self._polled
        last = polled.get(ref.request_id)
        due = self.webhook_poll_interval - (0.0 if last is None else time.monotonic() - last[0])
        delivery = await self.deliveries.wait(ref.request_id, min(timeout, max(0.0, due)))
        if delivery is not None:
            polled.pop(ref.request_id, None)
            state = delivery.state or await self.status(route, ref)
            return replace(state, via="webhook")
        if last is not None and time.monotonic() - last[0] < self.webhook_poll_interval:
            return last[1]
        state = await self.status(route, ref)
        self.remember(ref, state)
        return state

    def remember(self, ref: ProviderRef, state: ProviderState) -> None:
        """What a poll of ``ref`` said, for ``follow_webhooks`` until the next safety net."""
        polled = self._polled
        if state.terminal:
            polled.pop(ref.request_id, None)
            return
        polled[ref.request_id] = (time.monotonic(), state)
        polled.move_to_end(ref.request_id)
        while len(polled) > MAX_REMEMBERED:
            polled.popitem(last=False)

    @property
    def webhooks_enabled(self) -> bool:
        """Whether submits ask the provider for a webhook (so polling may be rare)."""
        return self.webhook_base_url is not None

    def webhook_url(self, job_id: str, **hints: str) -> str | None:
        """The URL a submit of ``job_id`` gives the provider to call back, or None when
        webhooks are off: ``{base}/v1/provider_webhooks/{name}?job={job_id}`` (+ ``hints``,
        unsigned, read back by ``parse_webhook`` from the query)."""
        if self.webhook_base_url is None:
            return None
        path = PROVIDER_WEBHOOK_PATH.format(provider=self.name)
        query = urlencode({WEBHOOK_JOB_PARAM: job_id, **hints})
        return f"{self.webhook_base_url.rstrip('/')}{path}?{query}"

    async def parse_webhook(
        self, headers: Mapping[str, str], body: bytes, query: Mapping[str, str] | None = None
    ) -> WebhookDelivery:
        """Verify one delivery to this provider's ingress route (the raw body, the headers
        and the query as they arrived) and read it; see ``WebhookDelivery``.

        Raises ``WebhookRejected`` (401) when it does not verify, ``InvalidRequest`` (400)
        for a verified body it cannot read, ``ServiceUnavailable`` (503) when the keys to
        verify it cannot be had now (the provider delivers it again later), and
        ``NotFound`` (404) for a provider that sends no webhooks (this default).
        """
        raise NotFound(f"The provider '{self.name}' sends no webhooks.")

    def availability(self, route: RouteSpec) -> tuple[bool, str | None]:
        """Whether ``route`` can run now, and if not, why (e.g. missing credentials)."""
        return True, None

    @abstractmethod
    async def submit(
        self, route: RouteSpec, job_input: dict[str, Any], *, job_id: str, kind: str
    ) -> ProviderRef:
        """Start the work; return the provider's reference. Must not block until done."""

    @abstractmethod
    async def poll(self, route: RouteSpec, ref: ProviderRef) -> ProviderState:
        """Read the current state of a submitted request."""

    @abstractmethod
    async def cancel(self, route: RouteSpec, ref: ProviderRef) -> None:
        """Ask the provider to stop the request; best effort."""

    async def wait(self, route: RouteSpec, ref: ProviderRef, timeout: float) -> ProviderState:
        """Return the state once it changes or after at most ``timeout`` seconds.

        The default sleeps and polls; providers that can be told (an in-process future, a
        webhook) override it to answer sooner.
        """
        await asyncio.sleep(min(timeout, self.poll_interval))
        return await self.status(route, ref)

    async def aclose(self) -> None:
        """Release clients and connections."""
