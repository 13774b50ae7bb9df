"""A supervised background loop: ``step`` again and again, ``interval`` seconds apart.

A step that fails is logged and the loop goes on (a janitor or a metric must never stop for
good because one pass failed); cancelling (``stop``) ends it. Subclasses name themselves and
implement ``step``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from abc import ABC, abstractmethod

log = logging.getLogger("backserv")


class BackgroundLoop(ABC):
    #: the task's name (in logs and asyncio's task list)
    name = "background"

    def __init__(self, interval: float) -> None:
        self.interval = interval
        self._task: asyncio.Task[None] | None = None

    @property
    def running(self) -> bool:
        return self._task is not None and not self._task.done()

    def start(self) -> None:
        if not self.running:
            self._task = asyncio.create_task(self._supervised(), name=self.name)

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    @abstractmethod
    async def step(self) -> None:
        """One pass; the loop waits ``interval`` seconds after it, whatever its outcome."""

    async def _supervised(self) -> None:
        while True:
            try:
                await self.step()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("%s failed; trying again in %.2f s", self.name, self.interval)
            await asyncio.sleep(self.interval)
