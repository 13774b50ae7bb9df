"""Webhook deliveries held for their runner (providers/deliveries.py)."""

from __future__ import annotations

import asyncio

from providers.base import ProviderState, StateKind, WebhookDelivery
from providers.deliveries import Deliveries

DONE = ProviderState(StateKind.SUCCEEDED)
RUNNING = ProviderState(StateKind.RUNNING, progress=10)


def delivery(request_id: str, state: ProviderState | None = DONE) -> WebhookDelivery:
    return WebhookDelivery(request_id=request_id, state=state, delivery_id=f"d-{request_id}")


async def test_a_delivery_that_came_first_is_taken_at_once_by_its_request() -> None:
    box = Deliveries[WebhookDelivery]()
    box.put(delivery("r1"))

    got = await box.wait("r1", timeout=5)

    assert got is not None and got.state is DONE
    assert await box.wait("r1", timeout=0) is None  # taken once


async def test_a_waiting_runner_wakes_when_its_delivery_comes() -> None:
    box = Deliveries[WebhookDelivery]()
    waiting = asyncio.create_task(box.wait("r1", timeout=5))
    await asyncio.sleep(0)
    box.put(delivery("r2"))  # another request's delivery wakes nobody here
    box.put(delivery("r1"))

    got = await asyncio.wait_for(waiting, 1)

    assert got is not None and got.request_id == "r1"
    assert len(box) == 1  # r2 waits for its own runner


async def test_a_late_progress_delivery_does_not_replace_the_end() -> None:
    box = Deliveries[WebhookDelivery]()
    box.put(delivery("r1", DONE))
    box.put(delivery("r1", RUNNING))

    got = box.take("r1")

    assert got is not None and got.state is DONE


async def test_no_delivery_is_a_none_after_the_timeout() -> None:
    assert await Deliveries[WebhookDelivery]().wait("r1", timeout=0.01) is None


def test_held_deliveries_are_bounded() -> None:
    box = Deliveries[WebhookDelivery](keep=3)
    for i in range(10):
        box.put(delivery(f"r{i}"))

    assert len(box) == 3
    assert box.take("r0") is None and box.take("r9") is not None
