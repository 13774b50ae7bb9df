"""FileThreads: the local storage's own threads for its file writes."""

from __future__ import annotations

import asyncio
import threading
import time

import pytest

from gateway.storage.file_threads import FileThreads


def alive(name: str) -> int:
    return sum(t.name == name for t in threading.enumerate())


async def test_every_call_gets_its_own_answer_from_at_most_size_threads() -> None:
    threads = FileThreads(size=2, name="ft-answers")
    seen: set[str] = set()

    def square(n: int) -> int:
        seen.add(threading.current_thread().name)
        time.sleep(0.001)
        return n * n

    assert await asyncio.gather(*(threads.run(square, n) for n in range(200))) == [
        n * n for n in range(200)
    ]
    assert seen == {"ft-answers"}
    assert alive("ft-answers") <= 2


async def test_a_failing_call_raises_in_its_caller_and_the_others_are_answered() -> None:
    threads = FileThreads(name="ft-fail")

    def maybe(n: int) -> int:
        if n == 3:
            raise OSError(28, "No space left on device")
        return n

    results = await asyncio.gather(
        *(threads.run(maybe, n) for n in range(6)), return_exceptions=True
    )
    assert [r for r in results if not isinstance(r, BaseException)] == [0, 1, 2, 4, 5]
    assert isinstance(results[3], OSError)


async def test_a_call_whose_caller_was_cancelled_still_runs_and_breaks_nothing() -> None:
    threads = FileThreads(name="ft-cancel")
    started, release, ran = threading.Event(), threading.Event(), threading.Event()

    def slow() -> None:
        started.set()
        release.wait(5)
        ran.set()

    task = asyncio.ensure_future(threads.run(slow))
    await asyncio.to_thread(started.wait, 5)
    task.cancel()
    release.set()
    with pytest.raises(asyncio.CancelledError):
        await task
    await asyncio.to_thread(ran.wait, 5)
    assert ran.is_set()
    assert await threads.run(int, "7") == 7  # the thread goes on serving


async def test_idle_threads_end_and_new_calls_start_them_again() -> None:
    threads = FileThreads(idle=0.05, name="ft-idle")
    assert await threads.run(len, "abc") == 3
    for thread in [t for t in threading.enumerate() if t.name == "ft-idle"]:
        await asyncio.to_thread(thread.join, 10)  # ends once idle 0.05 s
    assert alive("ft-idle") == 0
    assert await threads.run(len, "abcd") == 4
