"""Counting status reads (providers/polls.py, ``Provider.status``) and how an end was learned."""

from __future__ import annotations

from typing import Any

from providers.base import (
    Provider,
    ProviderRef,
    ProviderState,
    RouteSpec,
    StateKind,
    WebhookDelivery,
)
from providers.polls import PollCounts

ROUTE = RouteSpec("counted", "app")
RUNNING = ProviderState(StateKind.RUNNING)
DONE = ProviderState(StateKind.SUCCEEDED, progress=100)


class Counted(Provider):
    name = "counted"

    def __init__(self, answer: ProviderState = RUNNING) -> None:
        self.answer = answer
        self.reads = 0

    async def submit(
        self, route: RouteSpec, job_input: dict[str, Any], *, job_id: str, kind: str
    ) -> ProviderRef:
        return ProviderRef("r1")

    async def poll(self, route: RouteSpec, ref: ProviderRef) -> ProviderState:
        self.reads += 1
        return self.answer

    async def cancel(self, route: RouteSpec, ref: ProviderRef) -> None:
        return None


def test_counts_are_kept_per_request_and_in_all_until_taken() -> None:
    counts = PollCounts()
    for request_id in ("a", "b", "a", "a"):
        counts.add(request_id)

    assert counts.take("a") == 3
    assert counts.take("a") == 0  # forgotten once taken
    assert (counts.total, counts.take("b")) == (4, 1)


def test_the_least_recently_read_requests_are_forgotten_first() -> None:
    counts = PollCounts(keep=2)
    for request_id in ("a", "b", "a", "c"):
        counts.add(request_id)

    assert (counts.take("b"), counts.take("a"), counts.take("c")) == (0, 2, 1)
    assert counts.total == 4


async def test_status_reads_are_counted_and_a_plain_poll_says_so() -> None:
    provider = Counted()
    ref = ProviderRef("r1")

    first = await provider.status(ROUTE, ref)
    await provider.wait(ROUTE, ref, 0.0)

    assert provider.reads == 2 and provider.poll_counts.take("r1") == 2
    assert first.via == "poll"


async def test_an_end_brought_by_a_webhook_says_so_and_costs_no_read() -> None:
    provider = Counted()
    provider.webhook_base_url = "https://gateway.example"
    provider.deliver(WebhookDelivery("r1", DONE, "d1"))

    state = await provider.follow_webhooks(ROUTE, ProviderRef("r1"), 5.0)

    assert (state.kind, state.via) == (StateKind.SUCCEEDED, "webhook")
    assert provider.reads == 0 and provider.poll_counts.total == 0


async def test_a_delivery_without_a_state_is_read_at_once_and_credited_to_the_webhook() -> None:
    provider = Counted(DONE)
    provider.webhook_base_url = "https://gateway.example"
    provider.deliver(WebhookDelivery("r1", None, "relayed"))

    state = await provider.follow_webhooks(ROUTE, ProviderRef("r1"), 5.0)

    assert (state.kind, state.via) == (StateKind.SUCCEEDED, "webhook")
    assert provider.poll_counts.take("r1") == 1
