"""gateway/heap.py: startup's garbage is freed, its survivors frozen out of collections."""

from __future__ import annotations

import gc
import weakref
from collections.abc import Iterator

import pytest

from gateway.heap import settle_heap


class Node:
    def __init__(self) -> None:
        self.other: Node | None = None


@pytest.fixture
def thawed() -> Iterator[None]:
    """The test's process as it was: nothing left frozen for the tests after it."""
    yield
    gc.unfreeze()


@pytest.mark.usefixtures("thawed")
def test_garbage_left_by_startup_is_freed_not_frozen() -> None:
    a, b = Node(), Node()
    a.other, b.other = b, a  # a cycle: only the collector frees it
    gone = weakref.ref(a)
    del a, b

    settle_heap()

    assert gone() is None


@pytest.mark.usefixtures("thawed")
def test_what_startup_built_is_out_of_later_collections() -> None:
    kept = [Node() for _ in range(1000)]

    settle_heap()

    tracked = {id(o) for o in gc.get_objects()}
    assert not any(id(node) in tracked for node in kept)
    assert gc.get_freeze_count() >= len(kept)
