"""The serving process's garbage-collector settings (gateway/gc_policy.py)."""

from __future__ import annotations

import gc
import weakref
from collections.abc import Iterator

import pytest

from gateway.gc_policy import FULL_EVERY, tune_for_serving


class Node:
    def __init__(self) -> None:
        self.other: Node | None = None


@pytest.fixture
def tuned() -> Iterator[None]:
    before = gc.get_threshold()
    try:
        yield
    finally:
        gc.unfreeze()
        gc.set_threshold(*before)


def test_what_startup_left_alive_is_no_longer_walked_by_collections(tuned: None) -> None:
    kept = Node()
    tune_for_serving()
    assert not any(o is kept for o in gc.get_objects())
    assert gc.get_threshold()[2] == FULL_EVERY


def test_cycles_made_after_startup_are_still_freed_without_an_explicit_collect(
    tuned: None,
) -> None:
    tune_for_serving()
    a, b = Node(), Node()
    a.other, b.other = b, a
    gone = weakref.ref(a)
    del a, b
    allocated = [[] for _ in range(10 * gc.get_threshold()[0])]  # young collections run
    assert gone() is None
    assert len(allocated) > 0
