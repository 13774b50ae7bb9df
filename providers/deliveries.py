"""Verified webhook deliveries, waiting for the runner that follows their request.

The ingress route (gateway/api/provider_webhooks.py) hands each verified delivery to its
provider's ``Deliveries``; the provider's ``wait`` takes it instead of polling, so a job's
result comes from the answer that said it finished, with no extra round trip. A delivery may
arrive before the submit's answer was recorded (nobody waits on its request yet): it is kept
until the runner asks, for at most ``ttl`` seconds and ``keep`` requests (oldest dropped;
the safety-net poll still finds those). Providers redeliver: a later delivery replaces an
earlier one, except that a non-terminal state never replaces a terminal one, and a
"read it now" (a state of None: a delivery relayed from another replica, or one that could
not be read) never replaces a state.
"""

from __future__ import annotations

import asyncio
import time
from collections import OrderedDict
from typing import Any, Generic, Protocol, TypeVar


class WebhookDelivery(Protocol):
    """What is kept of a delivery (``providers.base.WebhookDelivery`` has it)."""

    @property
    def request_id(self) -> str: ...

    @property
    def state(self) -> Any: ...  # a ProviderState (``.terminal``), or None: "poll it now"


D = TypeVar("D", bound=WebhookDelivery)

KEEP = 10_000
TTL_SECONDS = 600.0


class Deliveries(Generic[D]):
    def __init__(self, *, keep: int = KEEP, ttl: float = TTL_SECONDS) -> None:
        self.keep = keep
        self.ttl = ttl
        self._held: OrderedDict[str, tuple[float, D]] = OrderedDict()
        self._waiters: dict[str, asyncio.Event] = {}

    def __len__(self) -> int:
        return len(self._held)

    def put(self, delivery: D) -> None:
        held = self._held.get(delivery.request_id)
        if held is not None and _terminal(held[1]) and not _terminal(delivery):
            return  # a late "started" after the end says nothing new
        if held is not None and held[1].state is not None and delivery.state is None:
            return  # a relayed "read it now" says less than the state already here
        self._held[delivery.request_id] = (time.monotonic(), delivery)
        self._held.move_to_end(delivery.request_id)
        self._expire()
        waiter = self._waiters.get(delivery.request_id)
        if waiter is not None:
            waiter.set()

    def take(self, request_id: str) -> D | None:
        held = self._held.pop(request_id, None)
        if held is None or time.monotonic() - held[0] > self.ttl:
            return None
        return held[1]

    async def wait(self, request_id: str, timeout: float) -> D | None:
        """The delivery for ``request_id``, as soon as there is one; None after ``timeout``."""
        found = self.take(request_id)
        if found is not None or timeout <= 0:
            return found
        waiter = self._waiters.setdefault(request_id, asyncio.Event())
        try:
            async with asyncio.timeout(timeout):
                await waiter.wait()
        except TimeoutError:
            return None
        finally:
            if self._waiters.get(request_id) is waiter:
                del self._waiters[request_id]
        return self.take(request_id)

    def _expire(self) -> None:
        now = time.monotonic()
        while self._held:
            oldest, _ = next(iter(self._held.values()))
            if len(self._held) <= self.keep and now - oldest <= self.ttl:
                break
            self._held.popitem(last=False)


def _terminal(delivery: WebhookDelivery) -> bool:
    return delivery.state is None or delivery.state.terminal
