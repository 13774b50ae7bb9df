from __future__ import annotations

import time
from collections.abc import AsyncIterator

import pytest

from tests.emulators.receiver import Receiver
from tests.emulators.server import serve


class ManualClock:
    """A clock a test moves by hand, so job phases are read off it deterministically."""

    def __init__(self) -> None:
        self.now = time.time()

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture
async def receiver() -> AsyncIterator[tuple[Receiver, str]]:
    """A webhook receiver on a real loopback port, and its URL (``…/hook``)."""
    endpoint = Receiver()
    async with serve(endpoint.app) as base_url:
        yield endpoint, f"{base_url}/hook"
