"""The PostgreSQL store's notifications: what a replica tells the others, and hears from them.

A mixin of ``PostgresJobStore``. Every replica sends and listens on the same channels
(postgres_schema.py names them); what arrives is served by one dedicated, supervised
listener connection (``Listener``, postgres_listen.py), started once the store is open and
something listens:

- **Work and cancels.** A committed insert batch, a release and a requeue notify
  ``backserv_work``; a cancel notifies ``backserv_cancel`` with the job id. ``subscribe``
  hands both to the scheduler.
- **Job changes.** Every committed change of a job is told to the local listeners at once
  (``_publish``) and to the other replicas through one NOTIFY per loop turn, however many
  jobs changed in it; a replica ignores its own (each payload names its ``instance``).
- **Key changes.** A revocation or an update of a key notifies ``backserv_key`` in its own
  transaction (postgres_keys.py). ``key_epoch`` moves at every key change heard (local or
  not) and at every connect and loss of the listener, and is None while it is down: a
  replica keeps what it read of a key only while it is sure to hear of the key's next change.
- **Provider deliveries.** A webhook delivery that arrived at one replica is relayed to the
  others (``relay_delivery``), best effort.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
from collections.abc import Callable
from typing import Any

from gateway.store import postgres_schema as sql
from gateway.store.base import JobStore
from gateway.store.postgres_listen import Listener, OnCancel, OnWork

log = logging.getLogger("backserv.store")

#: the largest NOTIFY payload sent (PostgreSQL refuses 8,000 bytes and more)
MAX_NOTIFY_BYTES = 7900


class PostgresNotify(JobStore):
    #: PostgresJobStore's: the database's address, for the listener's own connection
    url: str
    #: PostgresJobStore's asyncpg pool, None while the store is not open
    _pool: Any

    def __init__(self) -> None:
        super().__init__()
        self._instance = secrets.token_hex(6)
        self._notify_pending: set[str] = set()
        self._notify_task: asyncio.Task[None] | None = None
        self._subscribers: list[tuple[OnWork, OnCancel]] = []
        self._listener: Listener | None = None
        self._key_epoch = 0
        self._keys_live = False

    def subscribe(self, on_work: OnWork, on_cancel: OnCancel) -> None:
        """Call ``on_work()`` when any replica queues work, ``on_cancel(id)`` on a cancel.

        Callbacks run on the event loop and must not block. Subscribing the same pair again
        (a restarted scheduler) registers it once. The listener starts now if the store is
        open, else in ``open()``.
        """
        if (on_work, on_cancel) not in self._subscribers:
            self._subscribers.append((on_work, on_cancel))
        self._start_listener()

    @property
    def listener_pid(self) -> int | None:
        """The server pid of the listener connection while it is connected, else None."""
        return None if self._listener is None else self._listener.pid

    def _start_listener(self) -> None:
        wanted = (
            self._subscribers
            or self._change_listeners
            or self._delivery_listeners
            or self._key_listeners
        )
        if self._listener is None and wanted and self._pool is not None:
            self._listener = Listener(
                self.url,
                self._work,
                self._cancelled,
                self._remote_change,
                self._relayed,
                on_key=self._remote_key_change,
                on_live=self._listening,
            )
            self._listener.start()

    def watch_keys(self, listener: Callable[[str], None]) -> None:
        super().watch_keys(listener)
        self._start_listener()

    async def key_epoch(self) -> int | None:
        return self._key_epoch if self._keys_live else None

    def _keys_changed(self, key_id: str) -> None:
        """A key changed, here (after the commit) or at any replica (its NOTIFY)."""
        self._key_epoch += 1
        super()._keys_changed(key_id)

    @property
    def instance(self) -> str:
        return self._instance

    def _remote_key_change(self, payload: str) -> None:
        instance, _, key_id = payload.partition(":")
        if instance != self._instance and key_id:
            self._keys_changed(key_id)

    def _listening(self, live: bool) -> None:
        """The listener connected (every key change from now on will be heard) or was lost
        (changes may go unheard: nothing read by key may be kept until it is back)."""
        self._key_epoch += 1
        self._keys_live = live

    def watch_deliveries(self, listener: Callable[[str, str, str | None], None]) -> None:
        super().watch_deliveries(listener)
        self._start_listener()

    async def relay_delivery(self, provider: str, request_id: str, state: str | None) -> None:
        """Tell the other replicas through one NOTIFY (``provider``, ``request_id``, this
        store's instance, and ``state`` when the payload stays under PostgreSQL's limit,
        else nothing: "read it now"); best effort: the safety-net poll finds a delivery whose
        relay was lost."""
        if self._pool is None:
            return
        payload = f"{provider}\n{request_id}\n{self._instance}\n"
        if state and len(payload.encode()) + len(state.encode()) <= MAX_NOTIFY_BYTES:
            payload += state
        try:
            await asyncio.wait_for(self._pool.execute(sql.NOTIFY_DELIVERY, payload), 5.0)
        except Exception:
            log.exception("relaying a %s delivery failed", provider)

    def _relayed(self, payload: str) -> None:
        """A relayed delivery: for the listeners unless this replica sent it (its own
        ingress already handed it over)."""
        provider, request_id, instance, state = [*payload.split("\n", 3), "", "", ""][:4]
        if provider and request_id and instance != self._instance:
            self._delivered(provider, request_id, state or None)

    def watch_changes(self, listener: Callable[[str], None]) -> None:
        super().watch_changes(listener)
        self._start_listener()

    def _publish(self, job_ids: list[str]) -> None:
        """Tell local listeners now, and other replicas through one coalesced NOTIFY."""
        if not job_ids:
            return
        self._changed(job_ids)
        self._notify_pending.update(job_ids)
        if self._notify_task is None or self._notify_task.done():
            self._notify_task = asyncio.get_running_loop().create_task(self._flush_notify())

    def _published(self, job_id: str, changed: bool) -> bool:
        """Publish ``job_id`` when ``changed``; return ``changed``."""
        if changed:
            self._publish([job_id])
        return changed

    async def _flush_notify(self) -> None:
        await asyncio.sleep(0)  # let the changes of this loop turn gather
        while self._notify_pending and self._pool is not None:
            ids, self._notify_pending = list(self._notify_pending), set()
            try:
                await self._pool.execute(sql.NOTIFY_CHANGED, self._instance, ids)
            except Exception:
                log.exception("notifying %d job changes failed", len(ids))

    def _remote_change(self, payload: str) -> None:
        instance, _, job_id = payload.partition(":")
        if instance != self._instance and job_id:
            self._changed([job_id])

    def _work(self) -> None:
        for on_work, _ in list(self._subscribers):
            try:
                on_work()
            except Exception:
                log.exception("a work subscriber failed")

    def _cancelled(self, job_id: str) -> None:
        for _, on_cancel in list(self._subscribers):
            try:
                on_cancel(job_id)
            except Exception:
                log.exception("a cancel subscriber failed")
