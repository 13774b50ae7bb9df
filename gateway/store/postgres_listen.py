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
    once; a lost cancel is caught by the scheduler's heartbeat instead. ``on_live(True)``
    once it listens on every channel, ``on_live(False)`` as soon as the connection is known
    lost: whoever keeps state that notifications invalidate (the key ring) keeps it only
    while live.
    """

    def __init__(
        self,
        url: str,
        on_work: OnWork,
        on_cancel: OnCancel,
        on_change: OnCancel,
        on_delivery: OnCancel | None = None,
        on_key: OnCancel | None = None,
        on_live: Callable[[bool], None] | None = None,
    ) -> None:
        self.url = url
        self.on_work = on_work
        self.on_cancel = on_cancel
        self.on_change = on_change
        self.on_delivery = on_delivery
        self.on_key = on_key
        self.on_live = on_live
        self.live = False
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

        def terminated(_conn: Any) -> None:
            self._set_live(False)
            lost.set()

        try:
            conn.add_termination_listener(terminated)
            await conn.add_listener(sql.WORK_CHANNEL, self._notified)
            await conn.add_listener(sql.CANCEL_CHANNEL, self._notified)
            await conn.add_listener(sql.JOB_CHANNEL, self._notified)
            await conn.add_listener(sql.DELIVERY_CHANNEL, self._notified)
            await conn.add_listener(sql.KEY_CHANNEL, self._notified)
            self.pid = conn.get_server_pid()
            self._set_live(not lost.is_set())
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
            self._set_live(False)
            self.pid = None
            if not conn.is_closed():
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(conn.close(), 2.0)
                conn.terminate()

    def _set_live(self, live: bool) -> None:
        if live != self.live:
            self.live = live
            if self.on_live is not None:
                self.on_live(live)

    def _notified(self, _conn: Any, _pid: int, channel: str, payload: str) -> None:
        if channel == sql.CANCEL_CHANNEL:
            self.on_cancel(payload)
        elif channel == sql.JOB_CHANNEL:
            self.on_change(payload)
        elif channel == sql.KEY_CHANNEL:
            if self.on_key is not None:
                self.on_key(payload)
        elif channel == sql.DELIVERY_CHANNEL:
            if self.on_delivery is not None:
                self.on_delivery(payload)
        else:
            self.on_work()
