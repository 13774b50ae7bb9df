from __future__ import annotations

import time

import pytest


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
