"""The webhook dispatcher: turns job changes into stored deliveries, and sends them.

Three supervised loops, started and stopped with the app (like the janitor):

- **intake**: every committed change of a job (``JobEvents``; on PostgreSQL also the changes
  other replicas make) marks the job; the loop reads each marked job once and stores the
  deliveries it owes (``due.py``). A job without a webhook is remembered, so its next
  changes cost nothing.
- **sweep** (every ``sweep_seconds``): stores the ``completed`` delivery of any recently
  finished job that lacks one, so a crash between a job's last change and the delivery's
  creation loses nothing; and deletes old delivered/failed deliveries.
- **send**: claims due deliveries (a lease keeps other replicas off them) and sends up to
  ``concurrency`` at once; a 2xx marks one delivered, anything else schedules a retry with
  exponential backoff until ``Backoff.window`` has passed since its creation, then it fails.
  A new delivery wakes the loop at once; otherwise it looks every ``poll_seconds``.

Deliveries are rows, so a restart drops none: the next dispatcher sends what is due. The
guarantee is at-least-once (a receiver dedups by ``webhook-id``), with no order across events.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Hashable
from typing import Any

from gateway.events import JobEvents
from gateway.jobs import Job
from gateway.observability.logs import current_job_id
from gateway.observability.redact import redact_url
from gateway.settings import Settings
from gateway.store.base import JobStore, WebhookDelivery
from gateway.webhooks.due import due_events, hook_of, new_delivery
from gateway.webhooks.sender import Backoff, Outcome, Sender

log = logging.getLogger("backserv.webhooks")

Render = Callable[[Job], dict[str, Any]]
MEMORY = 100_000  # job ids remembered as webhook-less, and (job, event) pairs as stored
BATCH = 200  # rows per sweep query


class _Recent:
    """A bounded set that forgets its oldest members."""

    def __init__(self, size: int = MEMORY) -> None:
        self._items: OrderedDict[Hashable, None] = OrderedDict()
        self._size = size

    def __contains__(self, item: Hashable) -> bool:
        return item in self._items

    def add(self, item: Hashable) -> None:
        self._items[item] = None
        self._items.move_to_end(item)
        if len(self._items) > self._size:
            self._items.popitem(last=False)


class WebhookDispatcher:
    def __init__(
        self,
        store: JobStore,
        render: Render,
        sender: Sender,
        *,
        events: JobEvents | None = None,
        backoff: Backoff | None = None,
        concurrency: int = 16,
        poll_seconds: float = 1.0,
        sweep_seconds: float = 30.0,
        keep_seconds: float = 7 * 24 * 3600.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.store = store
        self.render = render
        self.sender = sender
        self.backoff = backoff or Backoff()
        self.concurrency = concurrency
        self.poll_seconds = poll_seconds
        self.sweep_seconds = sweep_seconds
        self.keep_seconds = keep_seconds
        self.clock = clock
        #: a claimed delivery is nobody else's for this long (the resolve and the send fit)
        self.lease = 2 * sender.timeout + 30.0
        self._marked: set[str] = set()
        self._marked_event = asyncio.Event()
        self._wake = asyncio.Event()
        self._no_hook = _Recent()
        self._stored = _Recent()
        self._inflight: set[asyncio.Task[None]] = set()
        self._tasks: list[asyncio.Task[None]] = []
        if events is not None:
            events.add_listener(self.job_changed)

    @classmethod
    def from_settings(
        cls, settings: Settings, store: JobStore, render: Render, events: JobEvents | None
    ) -> WebhookDispatcher:
        return cls(
            store,
            render,
            Sender(settings.webhook_allow_list, settings.webhook_timeout_seconds),
            events=events,
            backoff=Backoff(
                base=settings.webhook_retry_base_seconds, window=settings.webhook_retry_seconds
            ),
            concurrency=settings.webhook_concurrency,
            keep_seconds=settings.record_ttl_seconds,
        )

    @property
    def running(self) -> bool:
        return bool(self._tasks) and not any(t.done() for t in self._tasks)

    # -- intake -------------------------------------------------------------------------

    def job_changed(self, job_id: str) -> None:
        """The ``JobEvents`` listener: note the change, to be read by the intake loop."""
        if self._tasks and job_id not in self._no_hook:
            self._marked.add(job_id)
            self._marked_event.set()

    async def process(self, job_id: str) -> int:
        """Store the deliveries job ``job_id`` owes now; return how many were new."""
        job = await self.store.get_job(job_id)
        if job is None:
            return 0
        if hook_of(job) is None:
            self._no_hook.add(job_id)  # a job's meta never changes
            return 0
        missing = [d for d in due_events(job) if (job_id, d.key) not in self._stored]
        if not missing:
            return 0
        data, now, created = self.render(job), self.clock(), 0
        for due in missing:
            if await self.store.create_delivery(new_delivery(job, due, data, now)):
                created += 1
            self._stored.add((job_id, due.key))
        if created:
            self._wake.set()
        return created

    async def _intake(self) -> None:
        while True:
            await self._marked_event.wait()
            self._marked_event.clear()
            marked, self._marked = self._marked, set()
            try:  # one query for the batch: most changed jobs have no webhook
                hooked = await self.store.hooked_jobs(list(marked))
            except Exception:
                log.exception(
                    "webhooks: reading which of %d jobs have a webhook failed", len(marked)
                )
                hooked = marked
            for job_id in marked - hooked:
                self._no_hook.add(job_id)  # a job's meta never changes
            for job_id in hooked:
                try:
                    await self.process(job_id)
                except Exception:
                    log.exception(
                        "webhooks: reading job %s failed", job_id, extra={"job_id": job_id}
                    )

    # -- sweep --------------------------------------------------------------------------

    async def sweep(self, since: float) -> int:
        """Store missing ``completed`` deliveries of jobs finished since ``since``, and purge
        old finished deliveries; return how many deliveries were stored."""
        created = 0
        for _ in range(50):  # bounded: the next sweep goes on
            ids = await self.store.jobs_missing_completed_delivery(since, BATCH)
            page = 0
            for job_id in ids:
                page += await self.process(job_id)
            created += page
            if len(ids) < BATCH or not page:
                break
        cutoff = self.clock() - self.keep_seconds
        while await self.store.purge_deliveries_before(cutoff, BATCH) >= BATCH:
            pass
        return created

    async def _sweeper(self) -> None:
        since = self.clock() - self.backoff.window  # at start-up, the whole retry window
        while True:
            started = self.clock()
            try:
                if created := await self.sweep(since):
                    log.info("webhooks: the sweep stored %d completion deliveries", created)
                since = started - max(60.0, 2 * self.sweep_seconds)
            except Exception:
                log.exception("webhooks: sweep failed")
            await asyncio.sleep(self.sweep_seconds)

    # -- send ---------------------------------------------------------------------------

    async def _sender(self) -> None:
        while True:
            self._wake.clear()
            free = self.concurrency - len(self._inflight)
            claimed: list[WebhookDelivery] = []
            if free > 0:
                try:
                    claimed = await self.store.claim_due_deliveries(self.clock(), free, self.lease)
                except Exception:
                    log.exception("webhooks: claiming deliveries failed")
                for delivery in claimed:
                    task = asyncio.create_task(self._attempt(delivery), name=delivery.id)
                    self._inflight.add(task)
                    task.add_done_callback(self._sent)
            if free > 0 and len(claimed) == free:
                continue  # there may be more due
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.poll_seconds):
                    await self._wake.wait()

    async def _attempt(self, delivery: WebhookDelivery) -> None:
        try:
            await self.deliver(delivery)
        except Exception:  # recording failed: the delivery is sent again after its lease
            log.exception("webhooks: recording the attempt at %s failed", delivery.id)

    def _sent(self, task: asyncio.Task[None]) -> None:
        self._inflight.discard(task)
        self._wake.set()  # a slot is free

    async def deliver(self, delivery: WebhookDelivery) -> Outcome:
        """Make one attempt at ``delivery`` (claimed) and record what came of it."""
        token = current_job_id.set(delivery.job_id)  # every line of the attempt names its job
        try:
            return await self._deliver(delivery)
        finally:
            current_job_id.reset(token)

    async def _deliver(self, delivery: WebhookDelivery) -> Outcome:
        try:
            secret = await self.store.get_or_create_webhook_secret(delivery.owner)
            outcome = await self.sender.send(
                delivery.url,
                delivery.id,
                delivery.payload.encode(),
                secret.secret,
                int(self.clock()),
            )
        except Exception as exc:
            log.exception("webhooks: sending %s failed", delivery.id)
            outcome = Outcome(False, error=f"internal error ({type(exc).__name__})")
        now = self.clock()
        attempt = delivery.attempts + 1
        if outcome.delivered:
            status, at = "delivered", now
        else:
            retry = None
            if not outcome.permanent:
                retry = self.backoff.next_attempt(attempt, delivery.created_at, now)
            status, at = ("failed", now) if retry is None else ("pending", retry)
            log.info(
                "webhooks: %s to %s, attempt %d: %s (%s)",
                delivery.id,
                redact_url(delivery.url),  # a token may ride in its query string
                attempt,
                outcome.error,
                status,
            )
        await self.store.record_delivery_result(
            delivery.id,
            attempt,
            status=status,
            status_code=outcome.status_code,
            error=outcome.error,
            next_attempt_at=at,
            now=now,
        )
        return outcome

    # -- lifecycle ----------------------------------------------------------------------

    def start(self) -> None:
        if self._tasks:
            return
        self._tasks = [
            asyncio.create_task(_supervised(name, loop), name=f"webhooks-{name}")
            for name, loop in (
                ("intake", self._intake),
                ("sweep", self._sweeper),
                ("send", self._sender),
            )
        ]

    async def stop(self, grace: float = 3.0) -> None:
        """Stop taking work; give sends in flight ``grace`` seconds, then cancel them (a
        cancelled one stays pending and is sent again once its lease ends)."""
        tasks, self._tasks = self._tasks, []
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if self._inflight:
            _, pending = await asyncio.wait(set(self._inflight), timeout=grace)
            for task in pending:
                task.cancel()
            for task in pending:
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        self._marked.clear()
        await self.sender.aclose()


async def _supervised(name: str, loop: Callable[[], Awaitable[None]]) -> None:
    """Run ``loop``; if it ever fails, log it and run it again after a pause."""
    while True:
        try:
            await loop()
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("webhooks: the %s loop failed; restarting it in 1 s", name)
            await asyncio.sleep(1.0)
