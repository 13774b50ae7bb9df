"""``shielded`` (gateway/scheduler/shielded.py): a write outlives its cancelled caller."""

from __future__ import annotations

import asyncio
import gc
import logging

import pytest

from gateway.errors import StaleLease
from gateway.scheduler.shielded import shielded


async def test_a_write_runs_to_its_end_when_its_caller_is_cancelled() -> None:
    done = asyncio.Event()

    async def write() -> None:
        await asyncio.sleep(0.01)
        done.set()

    caller = asyncio.create_task(shielded(write()))
    await asyncio.sleep(0)
    caller.cancel()
    with pytest.raises(asyncio.CancelledError):
        await caller
    await asyncio.wait_for(done.wait(), 5)


async def test_a_write_failing_after_its_caller_left_is_not_an_unretrieved_error(
    caplog: pytest.LogCaptureFixture,
) -> None:
    failed = asyncio.Event()

    async def write() -> None:
        await asyncio.sleep(0.01)
        failed.set()
        raise StaleLease("job job-1: the job ended meanwhile")

    caplog.set_level(logging.DEBUG)
    caller = asyncio.create_task(shielded(write()))
    await asyncio.sleep(0)
    caller.cancel()
    with pytest.raises(asyncio.CancelledError):
        await caller
    await failed.wait()
    await asyncio.sleep(0.01)
    gc.collect()  # an unretrieved task's error is reported when the task is collected
    await asyncio.sleep(0)
    assert not [r for r in caplog.records if r.name == "asyncio" and r.levelno >= logging.ERROR]
    assert any(
        r.name == "backserv.scheduler" and "StaleLease" in r.getMessage() for r in caplog.records
    )


async def test_the_caller_still_gets_the_writes_result_or_error() -> None:
    async def ok() -> int:
        return 7

    async def stale() -> None:
        raise StaleLease("job job-2: stale")

    assert await shielded(ok()) == 7
    with pytest.raises(StaleLease):
        await shielded(stale())
