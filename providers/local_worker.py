"""The local provider's bookkeeping: a request's state and cancel flag, and a device's worker.

A ``DeviceWorker`` is one thread (a single-thread executor) per device, so jobs on one
device run one at a time, in the order they came; the requests waiting for it know their
queue position. Everything here but ``LocalRequest.cancel`` and ``LocalRequest.steps`` is
touched on the event loop only.
"""

from __future__ import annotations

import asyncio
import os
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from typing import Any

from providers.base import ProviderState, StateKind

__all__ = ["DeviceWorker", "LocalRequest", "cpu_threads_default"]


class LocalRequest:
    """One submitted request: its state, a way to hear when it changes, and its cancel flag."""

    __slots__ = ("cancel", "changed", "evict", "id", "state", "steps", "task")

    def __init__(self, request_id: str) -> None:
        self.id = request_id
        self.state = ProviderState(StateKind.QUEUED, progress=0, queue_position=0)
        self.changed = asyncio.Event()  # set, then replaced, at every change
        self.cancel = threading.Event()  # read by the worker thread between steps
        self.steps = 0  # written by the worker thread only
        self.task: asyncio.Task[None] | None = None
        self.evict: asyncio.TimerHandle | None = None

    def update(self, state: ProviderState) -> None:
        """Move to ``state`` and wake the waiters; a terminal state is never left."""
        if self.state.terminal or state == self.state:
            return
        self.state = state
        changed, self.changed = self.changed, asyncio.Event()
        changed.set()

    def end(self, kind: StateKind, **fields: Any) -> None:
        self.update(ProviderState(kind, progress=self.state.progress, **fields))


class DeviceWorker:
    """A device's single worker thread, and the requests waiting for it, in order."""

    def __init__(self, device: str) -> None:
        self.device = device
        self.executor = ThreadPoolExecutor(1, thread_name_prefix=f"backserv-local-{device}")
        self.waiting: list[LocalRequest] = []

    def started(self, request: LocalRequest) -> None:
        self.leave(request)
        request.update(ProviderState(StateKind.RUNNING, progress=0))

    def leave(self, request: LocalRequest) -> None:
        if request in self.waiting:
            self.waiting.remove(request)
            for position, other in enumerate(self.waiting):
                if other.state.kind is StateKind.QUEUED:
                    other.update(replace(other.state, queue_position=position))


def cpu_threads_default() -> int:
    """One fewer than the cores this process may use, at least one.

    torch's default (one thread per core) leaves nothing for the event loop; worse, when
    anything else wants a core, its OpenMP threads wait on each other: measured on 2 cores
    beside another busy process, 60 tiny steps took 60 s with 2 threads and 4.7 s with 1,
    and the event loop's worst lag went from 87 ms to 10 ms.
    """
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        cores = os.cpu_count() or 1
    return max(1, cores - 1)
