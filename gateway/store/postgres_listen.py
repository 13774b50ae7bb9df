"""The PostgreSQL store's LISTEN connection: wake-ups and cancels from other replicas."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from typing import Any

import asyncpg

from gateway.store import postgres_schema as sql

log = logging.getLogger("backserv.store")

COMMAND_TIMEOUT = 30.0  # seconds, for every statement on the listener connection
BACKOFF_MIN, BACKOFF_MAX = 0.1, 10.0  # seconds between the listener's reconnection attempts
PING_SECONDS = 15.0  # an idle listener checks its connection this often

OnWork = Callable[[], None]
OnCancel = Callable[[str], None]


class Listener:
    """A dedicated LISTEN connection, supervised: reconnects with backoff, pings while idle.

    Notifications sent while it was away are lost, so after a reconnect it calls ``on_work``
    once; a lost cancel is caught by the scheduler's heartbeat instead.
    """

    def __init__(
        self,
        url: str,
        on_work: OnWork,
        on_cancel: OnCancel,
        on_change: OnCancel,
        on_delivery: OnCancel | None = None,
    ) -> None:
        self.url = url
        self.on_work = on_work
        self.on_cancel = on_cancel
        self.on_change = on_change
        self.on_delivery = on_delivery
        self.pid: int | None = None
        self._task: asyncio.Task[None] | None = None
        self._delay = BACKOFF_MIN
        self._was_connected = False

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run(), name="pg-listener")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def _run(self) -> None:
        while True:
            try:
                await self._listen()
                log.warning("the listener connection was lost; reconnecting")
            except Exception as exc:
                log.warning("listener: %r; reconnecting in %.1f s", exc, self._delay)
            await asyncio.sleep(self._delay)
            self._delay = min(self._delay * 2, BACKOFF_MAX)

    async def _listen(self) -> None:
        """Listen until the connection is lost (returns) or fails a ping (raises)."""
        conn = await asyncpg.connect(
            self.url,
            timeout=COMMAND_TIMEOUT,
            command_timeout=COMMAND_TIMEOUT,
            server_settings={"application_name": "backserv-listener"},
        )
        lost = asyncio.Event()
        try:
            conn.add_termination_listener(lambda _conn: lost.set())
            await conn.add_listener(sql.WORK_CHANNEL, self._notified)
            await conn.add_listener(sql.CANCEL_CHANNEL, self._notified)
            await conn.add_listener(sql.JOB_CHANNEL, self._notified)
            await conn.add_listener(sql.DELIVERY_CHANNEL, self._notified)
            self.pid = conn.get_server_pid()
            self._delay = BACKOFF_MIN
            if self._was_connected:
                self.on_work()  # whatever was queued while we were away
            self._was_connected = True
            while not lost.is_set():
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(lost.wait(), PING_SECONDS)
                if not lost.is_set():
                    await conn.execute("SELECT 1")
        finally:
            self.pid = None
            if not conn.is_closed():
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(conn.close(), 2.0)
                conn.terminate()

    def _notified(self, _conn: Any, _pid: int, channel: str, payload: str) -> None:
        if channel == sql.CANCEL_CHANNEL:
            self.on_cancel(payload)
        elif channel == sql.JOB_CHANNEL:
            self.on_change(payload)
        elif channel == sql.DELIVERY_CHANNEL:
            if self.on_delivery is not None:
                self.on_delivery(payload)
        else:
            self.on_work()
