"""The per-provider poller (providers/poller.py): one timer, bounded reads, per-request pace."""

from __future__ import annotations

import asyncio

import pytest

from gateway.errors import ProviderTransientError
from providers.base import ProviderRef, ProviderState, RouteSpec, StateKind
from providers.poller import Poller

ROUTE = RouteSpec("p", "app")
RUNNING = ProviderState(StateKind.RUNNING)
DONE = ProviderState(StateKind.SUCCEEDED, progress=100)


class Reads:
    """A read function that counts the reads in flight and answers from ``answers``."""

    def __init__(self, pause: float = 0.0) -> None:
        self.pause = pause
        self.calls: list[str] = []
        self.in_flight = self.peak = 0
        self.answers: dict[str, ProviderState | Exception] = {}

    async def __call__(self, route: RouteSpec, ref: ProviderRef) -> ProviderState:
        self.calls.append(ref.request_id)
        self.in_flight += 1
        self.peak = max(self.peak, self.in_flight)
        try:
            await asyncio.sleep(self.pause)
        finally:
            self.in_flight -= 1
        answer = self.answers.get(ref.request_id, RUNNING)
        if isinstance(answer, Exception):
            raise answer
        return answer


def test_each_request_backs_off_on_its_own_schedule_up_to_a_bound() -> None:
    poller = Poller(Reads(), interval=1.0, workers=2, name="p", keep=2)

    delays = [poller.next_delay("a") for _ in range(10)]
    assert delays == pytest.approx([0.25 * 1.5**n for n in range(7)] + [4.0, 4.0, 4.0])
    assert poller.next_delay("b") == 0.25  # another request starts its own schedule
    assert poller.next_delay("c") == 0.25  # a third schedule evicts the oldest ("a")
    assert poller.next_delay("a") == 0.25
    poller.forget("a")
    assert poller.next_delay("a") == 0.25


async def test_many_requests_due_together_are_read_on_one_tick_by_bounded_workers() -> None:
    reads = Reads(pause=0.001)
    poller = Poller(reads, interval=0.2, workers=4, name="p")

    states = await asyncio.gather(
        *(poller.wait(ROUTE, ProviderRef(f"r{n}"), 30.0) for n in range(200))
    )

    assert [s.kind for s in states] == [StateKind.RUNNING] * 200
    assert sorted(reads.calls) == sorted(f"r{n}" for n in range(200))
    assert poller.fires <= 2  # one timer for all (two if a tick passed while they queued)
    assert reads.peak == poller.peak == 4
    assert len(poller) == 0


async def test_a_timeout_shorter_than_the_schedule_wins() -> None:
    reads = Reads()
    poller = Poller(reads, interval=3600.0, workers=1, name="p")

    state = await asyncio.wait_for(poller.wait(ROUTE, ProviderRef("r1"), 0.0), 5)

    assert state.kind is StateKind.RUNNING and reads.calls == ["r1"]


async def test_a_read_error_reaches_only_its_own_waiter() -> None:
    reads = Reads()
    reads.answers["bad"] = ProviderTransientError("status read failed")
    poller = Poller(reads, interval=0.04, workers=2, name="p")

    bad, good = await asyncio.gather(
        poller.wait(ROUTE, ProviderRef("bad"), 30.0),
        poller.wait(ROUTE, ProviderRef("good"), 30.0),
        return_exceptions=True,
    )

    assert isinstance(bad, ProviderTransientError)
    assert isinstance(good, ProviderState) and good.kind is StateKind.RUNNING


async def test_a_waiter_that_went_away_is_not_read() -> None:
    reads = Reads()
    poller = Poller(reads, interval=0.04, workers=1, name="p")
    gone = asyncio.create_task(poller.wait(ROUTE, ProviderRef("gone"), 30.0))
    await asyncio.sleep(0)
    gone.cancel()

    await poller.wait(ROUTE, ProviderRef("kept"), 30.0)

    assert reads.calls == ["kept"]


async def test_an_ended_request_starts_its_schedule_over() -> None:
    reads = Reads()
    poller = Poller(reads, interval=0.04, workers=1, name="p")
    ref = ProviderRef("r1")
    await poller.wait(ROUTE, ref, 30.0)
    await poller.wait(ROUTE, ref, 30.0)
    reads.answers["r1"] = DONE

    assert (await poller.wait(ROUTE, ref, 30.0)).terminal
    assert poller.next_delay("r1") == pytest.approx(0.01)


async def test_closing_fails_the_waiters_still_there() -> None:
    poller = Poller(Reads(), interval=3600.0, workers=1, name="p")
    waiting = asyncio.create_task(poller.wait(ROUTE, ProviderRef("r1"), 3600.0))
    await asyncio.sleep(0)

    await poller.aclose()

    with pytest.raises(ProviderTransientError):
        await waiting
