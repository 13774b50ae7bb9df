"""MemoryBudget: renders run in threads within a budget of bytes, in order, never more."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable

import pytest

from providers.budget import MemoryBudget


class Work:
    """A render stand-in: runs in a thread until released; counts how many run at once."""

    def __init__(self) -> None:
        self.release = threading.Event()
        self.running = 0
        self.most = 0
        self.order: list[str] = []
        self._lock = threading.Lock()

    def __call__(self, name: str) -> str:
        with self._lock:
            self.running += 1
            self.most = max(self.most, self.running)
            self.order.append(name)
        self.release.wait(5)
        with self._lock:
            self.running -= 1
        return name


async def eventually(condition: Callable[[], bool]) -> None:
    async with asyncio.timeout(5):
        while True:
            if condition():
                return
            await asyncio.sleep(0.005)


async def started(work: Work, count: int) -> None:
    await eventually(lambda: len(work.order) >= count)


async def test_renders_run_at_once_only_while_their_costs_fit() -> None:
    budget, work = MemoryBudget(100), Work()

    tasks = [asyncio.create_task(budget.run(40, lambda n=n: work(f"r{n}"))) for n in range(5)]
    await started(work, 2)
    await asyncio.sleep(0.05)
    assert work.running == 2 and budget.in_use == 80
    work.release.set()

    assert await asyncio.gather(*tasks) == [f"r{n}" for n in range(5)]
    assert work.most == 2 and budget.peak <= 100 and budget.in_use == 0


async def test_waiters_are_served_in_order_so_a_large_render_is_not_starved() -> None:
    budget, work = MemoryBudget(100), Work()
    first = asyncio.create_task(budget.run(60, lambda: work("small-1")))
    await started(work, 1)
    large = asyncio.create_task(budget.run(100, lambda: work("large")))
    await asyncio.sleep(0.01)
    small = asyncio.create_task(budget.run(30, lambda: work("small-2")))  # would fit now
    await asyncio.sleep(0.05)

    assert work.order == ["small-1"]  # small-2 waits behind the large one
    work.release.set()
    await asyncio.gather(first, large, small)
    assert work.order == ["small-1", "large", "small-2"]


async def test_a_render_over_the_whole_budget_runs_alone() -> None:
    budget, work = MemoryBudget(100), Work()
    work.release.set()

    assert await budget.run(10**12, lambda: work("huge")) == "huge"
    assert budget.peak == 100


async def test_a_cancelled_render_holds_its_share_until_its_thread_ends() -> None:
    budget, work = MemoryBudget(100), Work()
    task = asyncio.create_task(budget.run(70, lambda: work("a")))
    await started(work, 1)

    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert budget.in_use == 70  # the thread still runs: its memory is still held

    work.release.set()
    await eventually(lambda: budget.in_use == 0)


async def test_a_waiter_cancelled_before_its_turn_takes_nothing() -> None:
    budget, work = MemoryBudget(100), Work()
    running = asyncio.create_task(budget.run(100, lambda: work("a")))
    await started(work, 1)
    waiting = asyncio.create_task(budget.run(50, lambda: work("b")))
    await asyncio.sleep(0.01)

    waiting.cancel()
    work.release.set()
    await running
    with pytest.raises(asyncio.CancelledError):
        await waiting
    assert work.order == ["a"] and budget.in_use == 0


async def test_an_error_of_the_render_reaches_the_caller_and_frees_the_budget() -> None:
    budget = MemoryBudget(100)

    def broken() -> None:
        time.sleep(0.01)
        raise ValueError("bad pixels")

    with pytest.raises(ValueError, match="bad pixels"):
        await budget.run(50, broken)
    assert budget.in_use == 0
