"""An emulator's webhook deliveries: when each one is due, and sending it with its fault.

Jobs are timelines read off the clock (timeline.py): nothing happens by itself. A
``WebhookDispatcher`` keeps one ``Subscription`` per job that asked for webhooks, in a heap by
the time of its next event; one runner task wakes when the first is due (and at least every
``TICK`` seconds, so a test's manual clock is noticed) and hands each due event to a
supervised task that signs and POSTs it, with the fault a test queued for it
(webhook_faults.py), retrying a non-2xx answer or a failed connection after each of
``Behaviour.webhook_retry_delays``. A job's deliveries go out in order: each waits for the
first attempt of the one before (a delayed one steps out of line). At most ``CONCURRENCY``
POSTs are in flight, each limited to ``Behaviour.webhook_timeout`` seconds; plain-http ones
go through a lean keep-alive client (webhook_http.py), the others through httpx.

What differs between fal and Replicate (events, bodies, signatures) is a ``WebhookFormat``.
Targets must be loopback addresses: an emulator never sends anything off the machine.
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import itertools
import logging
import secrets
import time
from collections import deque
from collections.abc import Callable, Coroutine, Iterable
from typing import Any
from urllib.parse import urlsplit

import httpx

from tests.emulators.behaviour import Behaviour
from tests.emulators.webhook_faults import NO_FAULT, WebhookFault
from tests.emulators.webhook_http import LoopbackPoster
from tests.emulators.webhook_types import (
    Delivery,
    DeliveryAttempt,
    PlannedEvent,
    Subscription,
    WebhookFormat,
    WebhookTargetError,
    check_target,
)

__all__ = [
    "DeliveryAttempt",
    "PlannedEvent",
    "Subscription",
    "WebhookDispatcher",
    "WebhookFormat",
    "WebhookTargetError",
    "check_target",
]

logger = logging.getLogger(__name__)

TICK = 0.05
CONCURRENCY = 64
_LOG_LIMIT = 20_000


class WebhookDispatcher:
    """Schedules and sends one emulator's webhooks; ``transport`` replaces the network."""

    def __init__(
        self,
        webhook_format: WebhookFormat,
        behaviour: Callable[[], Behaviour],
        clock: Callable[[], float],
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.format = webhook_format
        self._behaviour = behaviour
        self._clock = clock
        self._transport = transport
        self._client: httpx.AsyncClient | None = None
        self._poster = LoopbackPoster(keep=CONCURRENCY)
        self._subscriptions: dict[str, Subscription] = {}
        self._heap: list[tuple[float, int, Subscription]] = []
        self._order = itertools.count()
        self._tasks: set[asyncio.Task[None]] = set()
        self._runner: asyncio.Task[None] | None = None
        self._wake = asyncio.Event()
        self._changed = asyncio.Event()  # a job's deliveries were dispatched, or one ended
        self._slots = asyncio.Semaphore(CONCURRENCY)
        self._attempts: deque[DeliveryAttempt] = deque(maxlen=_LOG_LIMIT)
        self._seq = 0
        self.errors: list[BaseException] = []

    # --- what the emulator calls --------------------------------------------------------

    def subscribe(
        self, job_id: str, job: Any, url: str, events: Iterable[str], *, early: bool = False
    ) -> Subscription:
        """Deliver ``job``'s ``events`` to ``url``; ``early``: its terminal delivery took an
        ``early`` fault (the caller ended the job and sends it with ``deliver_now``)."""
        fault = WebhookFault(kind="early") if early else None
        subscription = Subscription(job_id, job, check_target(url), frozenset(events), fault)
        self._subscriptions[job_id] = subscription
        self._schedule(subscription)
        return subscription

    def subscription(self, job_id: str) -> Subscription | None:
        return self._subscriptions.get(job_id)

    def poke(self, job_id: str) -> None:
        """The job's timeline changed (a cancel): look at it again now."""
        subscription = self._subscriptions.get(job_id)
        if subscription is not None:
            self._schedule(subscription, self._clock())

    async def deliver_now(self, subscription: Subscription) -> None:
        """Send what is due and wait for the first attempts: ``early``, before the response."""
        self._process(subscription)
        if subscription.line is not None:
            await subscription.line.wait()

    # --- what tests call ----------------------------------------------------------------

    def deliveries(
        self, job_id: str | None = None, event: str | None = None
    ) -> list[DeliveryAttempt]:
        """The attempts made so far (the last 20,000), oldest first."""
        return [
            a
            for a in self._attempts
            if (job_id is None or a.job_id == job_id) and (event is None or a.event == event)
        ]

    @property
    def pending(self) -> int:
        """Jobs whose terminal event has not been dispatched yet."""
        return len(self._subscriptions)

    async def flush(self) -> None:
        """Dispatch whatever is due on the emulator's clock and wait until every delivery,
        retries included, is over (for tests that move a manual clock)."""
        for subscription in list(self._subscriptions.values()):
            self._process(subscription)
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)

    async def idle(self, timeout: float = 10.0) -> None:
        """Wait until every job has had its deliveries (on a real clock)."""
        async with asyncio.timeout(timeout):
            while self._subscriptions or self._tasks:
                self._changed.clear()
                await self._changed.wait()

    def reset(self) -> None:
        """Forget every subscription and attempt; deliveries in flight are abandoned."""
        for task in self._tasks:
            task.cancel()
        self._subscriptions.clear()
        self._heap.clear()
        self._attempts.clear()
        self.errors.clear()

    async def aclose(self) -> None:
        tasks = [*self._tasks, *([self._runner] if self._runner else [])]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._runner = None
        await self._poster.aclose()
        if self._client is not None:
            await self._client.aclose()
            self._client = None

    # --- scheduling ---------------------------------------------------------------------

    def _schedule(self, subscription: Subscription, at: float | None = None) -> None:
        if at is None:
            pending = [
                e.at for e in self.format.plan(subscription.job) if e.key not in subscription.sent
            ]
            if not pending:
                return
            at = min(pending)
        if subscription.due is not None and subscription.due <= at:
            return
        subscription.due = at
        heapq.heappush(self._heap, (at, next(self._order), subscription))
        self._start_runner()
        self._wake.set()

    def _start_runner(self) -> None:
        if self._runner is not None and not self._runner.done():
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return  # used outside a loop: flush() dispatches
        self._runner = loop.create_task(self._run())

    async def _run(self) -> None:
        while True:
            now = self._clock()
            while self._heap and self._heap[0][0] <= now:
                at, _, subscription = heapq.heappop(self._heap)
                if subscription.due == at:
                    subscription.due = None
                self._process(subscription)
            self._wake.clear()
            timeout = min(TICK, max(0.0, self._heap[0][0] - now)) if self._heap else None
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout)

    def _process(self, subscription: Subscription) -> None:
        """Dispatch the subscription's events due by now, in order; schedule the next one."""
        if subscription.over:
            return
        try:
            now = self._clock()
            plan = sorted(
                (e for e in self.format.plan(subscription.job) if e.key not in subscription.sent),
                key=lambda e: e.at,
            )
            for event in plan:
                if event.at > now:
                    self._schedule(subscription, event.at)
                    return
                subscription.sent.add(event.key)
                if event.name in subscription.events:
                    self._dispatch(subscription, event)
                if event.terminal:
                    self._finish(subscription)
                    return
        except Exception as exc:  # a bug in a format: keep the runner alive, tell the test
            self.errors.append(exc)
            logger.exception("webhook dispatch of %s failed", subscription.job_id)
            self._finish(subscription)

    def _finish(self, subscription: Subscription) -> None:
        subscription.over = True
        self._changed.set()
        if self._subscriptions.get(subscription.job_id) is subscription:
            del self._subscriptions[subscription.job_id]
        held, subscription.held = subscription.held, []
        for delivery in held:
            self._start(delivery)

    def _dispatch(self, subscription: Subscription, event: PlannedEvent) -> None:
        if event.terminal and subscription.early is not None:
            fault = subscription.early
        else:
            keys = (f"webhook:{event.name}", "webhook")
            fault = self._behaviour().next_webhook_fault(keys) or NO_FAULT
        body = self.format.render(subscription.job, event)
        delivery = Delivery(subscription, event, body, f"msg_{secrets.token_hex(12)}", fault)
        if fault.kind == "late" and not event.terminal:
            subscription.held.append(delivery)
        else:
            self._start(delivery)

    # --- sending ------------------------------------------------------------------------

    def _start(self, delivery: Delivery) -> None:
        subscription = delivery.subscription
        previous, mine = subscription.line, asyncio.Event()
        subscription.line = mine
        self._spawn(self._deliver(delivery, previous, mine))

    def _spawn(self, work: Coroutine[Any, Any, None]) -> None:
        task = asyncio.get_running_loop().create_task(work)
        self._tasks.add(task)
        task.add_done_callback(self._reap)

    def _reap(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        self._changed.set()
        if not task.cancelled() and (exc := task.exception()) is not None:
            self.errors.append(exc)
            logger.error("a webhook delivery task failed", exc_info=exc)

    async def _deliver(
        self, delivery: Delivery, previous: asyncio.Event | None, mine: asyncio.Event
    ) -> None:
        fault = delivery.fault
        try:
            if fault.kind == "drop":
                self._record(delivery, {}, status=None, error="dropped by a test's fault")
                return
            if fault.kind == "delay":
                mine.set()
                await asyncio.sleep(fault.seconds)
            elif previous is not None:
                await previous.wait()
            delivered = await self._attempt(delivery)
            mine.set()
            if fault.kind == "duplicate":
                await self._duplicate(delivery, fault)
            if delivered or not self.format.retried(delivery.event):
                return
            for attempt, delay in enumerate(list(self._behaviour().webhook_retry_delays), 1):
                await asyncio.sleep(delay)
                if await self._attempt(delivery, attempt=attempt):
                    return
        finally:
            mine.set()

    async def _duplicate(self, delivery: Delivery, fault: WebhookFault) -> None:
        copies = range(1, fault.times + 1)
        if fault.seconds == 0:
            await asyncio.gather(*(self._attempt(delivery, copy=n) for n in copies))
            return
        for n in copies:
            await asyncio.sleep(fault.seconds)
            await self._attempt(delivery, copy=n)

    async def _attempt(self, delivery: Delivery, *, attempt: int = 0, copy: int = 0) -> bool:
        fault = delivery.fault
        age = fault.seconds if fault.kind == "stale" else 0.0
        headers = self.format.sign(
            delivery.subscription.job,
            delivery.message_id,
            delivery.body,
            int(time.time() - age),
            forged=fault.kind == "bad_signature",
        )
        headers["content-type"] = "application/json"
        headers["user-agent"] = "backserv-emulator-webhooks"
        status: int | None = None
        error: str | None = None
        async with self._slots:
            try:
                status = await self._post(delivery.subscription.url, delivery.body, headers)
            except Exception as exc:  # whatever went wrong, this attempt was not delivered
                error = f"{type(exc).__name__}: {exc}"
        self._record(delivery, headers, status=status, error=error, attempt=attempt, copy=copy)
        return status is not None and 200 <= status < 300

    async def _post(self, url: str, body: bytes, headers: dict[str, str]) -> int:
        timeout = self._behaviour().webhook_timeout
        if self._transport is None and urlsplit(url).scheme == "http":
            return await self._poster.post(url, body, headers, timeout)
        response = await self._http().post(url, content=body, headers=headers, timeout=timeout)
        return response.status_code

    def _http(self) -> httpx.AsyncClient:
        if self._client is None:
            limits = httpx.Limits(
                max_connections=CONCURRENCY, max_keepalive_connections=CONCURRENCY
            )
            self._client = httpx.AsyncClient(
                transport=self._transport,
                limits=limits,
                trust_env=False,  # never through a proxy: the targets are on this machine
                follow_redirects=False,
            )
        return self._client

    def _record(
        self,
        delivery: Delivery,
        headers: dict[str, str],
        *,
        status: int | None,
        error: str | None,
        attempt: int = 0,
        copy: int = 0,
    ) -> None:
        self._seq += 1
        self._attempts.append(
            DeliveryAttempt(
                seq=self._seq,
                time=time.time(),
                job_id=delivery.subscription.job_id,
                event=delivery.event.name,
                url=delivery.subscription.url,
                message_id=delivery.message_id,
                attempt=attempt,
                copy=copy,
                fault=delivery.fault.kind,
                status=status,
                error=error,
                headers=headers,
                body=delivery.body,
            )
        )
