"""gateway/edge_clock.py: two deadlines behind one timer, each acted on once it has passed."""

from __future__ import annotations

import asyncio

from gateway.edge_clock import ConnectionClock


async def test_each_deadline_fires_in_its_turn_whichever_was_set_first() -> None:
    fired: list[str] = []
    both = asyncio.Event()

    def fire(name: str) -> None:
        fired.append(name)
        if len(fired) == 2:
            both.set()

    clock = ConnectionClock(asyncio.get_running_loop(), lambda: fire("head"), lambda: fire("idle"))
    clock.start_head(0.2)
    clock.start_idle(0.05)  # earlier than the pending timer: it is armed again, earlier
    await asyncio.wait_for(both.wait(), 10)
    assert fired == ["idle", "head"]
    assert clock.head is None and clock.idle is None and clock.timer is None


async def test_a_deadline_cleared_before_it_passes_never_fires() -> None:
    fired: list[str] = []
    clock = ConnectionClock(
        asyncio.get_running_loop(), lambda: fired.append("head"), lambda: fired.append("idle")
    )
    clock.start_head(0.05)
    clock.head = None  # the head was complete in time
    clock.start_idle(0.1)
    clock.stop()  # the connection closed
    await asyncio.sleep(0.3)
    assert fired == []
