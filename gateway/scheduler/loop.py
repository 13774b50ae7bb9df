"""The asyncio scheduler: claims jobs within each provider's concurrency, leases them, runs them.

It wakes on submit (and on a slot freeing up), otherwise every ``scheduler_poll_seconds``.
Jobs are claimed by priority, then age, per *lane* (the provider of a model's primary route),
never more than the lane's concurrency limit at once. Every claimed job holds a lease that
a heartbeat extends; leases that expired (a crashed or stalled worker) are handed back to the
queue by the recovery step built into the loop, and the next claim resumes them.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import secrets
import time
from collections.abc import Awaitable, Callable

from gateway.catalog import Catalog
from gateway.errors import StaleLease
from gateway.faults import resource_shortage
from gateway.jobs import Job, Status
from gateway.observability.logs import current_job_id
from gateway.observability.observer import JobObserver
from gateway.scheduler.runner import JobRunner
from gateway.scheduler.shielded import shielded
from gateway.spend import spend_of
from gateway.store.base import JobStore

log = logging.getLogger("backserv.scheduler")

_CANCELLED = "cancelled"  # the user cancelled the job
_LOST = "lost"  # the lease was lost (another worker took the job, or it was cancelled)
_SHUTDOWN = "shutdown"  # this worker is stopping: hand the job back
#: seconds a job whose run hit a resource shortage waits before it is handed back
HAND_BACK_PAUSE = 1.0


class Scheduler:
    def __init__(
        self,
        store: JobStore,
        catalog: Catalog,
        runner: JobRunner,
        *,
        concurrency: dict[str, int],
        observer: JobObserver | None = None,
        default_concurrency: int = 4,
        lease_seconds: float = 30.0,
        heartbeat_seconds: float = 10.0,
        poll_seconds: float = 1.0,
        worker_id: str | None = None,
    ) -> None:
        self.store = store
        self.catalog = catalog
        self.runner = runner
        self.observer = observer or JobObserver()
        self.concurrency = concurrency
        self.default_concurrency = default_concurrency
        self.lease_seconds = lease_seconds
        self.heartbeat_seconds = heartbeat_seconds
        self.poll_seconds = poll_seconds
        self.worker_id = worker_id or "w-" + secrets.token_hex(6)
        self._wake = asyncio.Event()
        self._inflight: dict[str, tuple[asyncio.Task[None], Job]] = {}
        self._lane_count: dict[str, int] = {}
        self._reasons: dict[str, str] = {}
        self._tasks: list[asyncio.Task[None]] = []
        self._stopping = False
        self.running = False

    # -- signals from the faces -----------------------------------------------------------

    def wake(self) -> None:
        self._wake.set()

    def job_cancelled(self, job_id: str) -> None:
        entry = self._inflight.get(job_id)
        if entry is not None:
            self._reasons[job_id] = _CANCELLED
            entry[0].cancel()

    @property
    def lanes(self) -> list[str]:
        """Every provider a job may be queued for: the catalog's primaries, and any other
        provider (a job's own route chain may start anywhere)."""
        return sorted({m.lane for m in self.catalog} | self.runner.provider_names)

    def limit(self, lane: str) -> int:
        return self.concurrency.get(lane, self.default_concurrency)

    def inflight(self, lane: str | None = None) -> int:
        if lane is None:
            return len(self._inflight)
        return self._lane_count.get(lane, 0)

    # -- lifecycle --------------------------------------------------------------------------

    async def start(self) -> None:
        self._stopping = False
        self.store.subscribe(self.wake, self.job_cancelled)
        await self.store.requeue_expired(time.time())
        self._tasks = [
            self._supervise("claim-loop", self._claim_loop),
            self._supervise("heartbeat-loop", self._heartbeat_loop),
            self._supervise("recovery-loop", self._recovery_loop),
        ]
        self.running = True
        self.wake()

    def _supervise(self, name: str, loop: Callable[[], Awaitable[None]]) -> asyncio.Task[None]:
        async def guarded() -> None:
            while not self._stopping:
                try:
                    await loop()
                except asyncio.CancelledError:
                    raise
                except Exception:
                    log.exception("scheduler %s crashed; restarting it in 1 s", name)
                    await asyncio.sleep(1.0)

        return asyncio.create_task(guarded(), name=f"scheduler-{name}")

    async def stop(self, grace: float = 10.0) -> None:
        """Stop claiming; hand back what is in flight; return within about ``grace`` seconds."""
        self._stopping = True
        self.running = False
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks = []
        entries = list(self._inflight.items())
        for job_id, (task, _job) in entries:
            self._reasons.setdefault(job_id, _SHUTDOWN)
            task.cancel()
        if entries:
            await asyncio.wait([t for _, (t, _) in entries], timeout=grace)

    async def run_until_idle(self, timeout: float = 30.0) -> None:
        """Burst mode: claim and run until no job is queued or running (for tests and CLIs)."""
        deadline = time.monotonic() + timeout
        while True:
            claimed = await self._claim_once()
            if not claimed and not self._inflight:
                return
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError("jobs were still running when the timeout passed")
            if self._inflight:
                tasks = [t for t, _ in self._inflight.values()]
                await asyncio.wait(tasks, timeout=remaining, return_when=asyncio.FIRST_COMPLETED)

    # -- the loops --------------------------------------------------------------------------

    async def _claim_loop(self) -> None:
        while not self._stopping:
            self._wake.clear()
            await self._claim_once()
            # asyncio.timeout, not wait_for: wait_for (3.11) runs the wait in a task of its
            # own, three turns of the event loop between a wake() and the claim, not one
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.poll_seconds):
                    await self._wake.wait()

    async def _claim_once(self) -> int:
        """Claim what each lane has room for: every lane in one store call (on SQLite, one
        commit), so a wake-up costs one write however many lanes there are."""
        wants = {
            lane: (self.limit(lane) - self.inflight(lane), self.limit(lane)) for lane in self.lanes
        }
        wants = {lane: want for lane, want in wants.items() if want[0] > 0}
        if not wants:
            return 0
        claimed = await self.store.claim_lanes(wants, self.worker_id, self.lease_seconds)
        for jobs in claimed.values():
            for job in jobs:
                self._start(job)
        return sum(len(jobs) for jobs in claimed.values())

    async def _heartbeat_loop(self) -> None:
        while not self._stopping:
            await asyncio.sleep(self.heartbeat_seconds)
            tokens = {job_id: job.lease_token for job_id, (_, job) in self._inflight.items()}
            renewed_from = time.time()
            held = await self.store.heartbeat(self.worker_id, tokens, self.lease_seconds)
            for job_id in held:
                entry = self._inflight.get(job_id)
                if entry is not None:  # the runner stops on its own when this runs out
                    entry[1].lease_expires = renewed_from + self.lease_seconds
            for job_id in tokens.keys() - held:
                entry = self._inflight.get(job_id)
                if entry is None:
                    continue
                latest = await self.store.get_job(job_id)
                if latest is not None and latest.status in (Status.COMPLETED, Status.FAILED):
                    continue  # it finished between our snapshot and the heartbeat: not lost
                log.warning("job %s: lease lost; stopping local work", job_id)
                self._reasons.setdefault(job_id, _LOST)
                entry[0].cancel()

    async def _recovery_loop(self) -> None:
        while not self._stopping:
            await asyncio.sleep(max(1.0, self.lease_seconds / 2))
            count = await self.store.requeue_expired(time.time())
            if count:
                log.warning("recovered %d job(s) whose lease expired", count)
                self.wake()

    # -- one job ----------------------------------------------------------------------------

    def _start(self, job: Job) -> None:
        self.observer.job_claimed(job)
        task = asyncio.create_task(self._run(job), name=f"job-{job.id}")
        self._inflight[job.id] = (task, job)
        self._lane_count[job.lane] = self._lane_count.get(job.lane, 0) + 1
        task.add_done_callback(functools.partial(self._done, job))

    def _done(self, job: Job, task: asyncio.Task[None]) -> None:
        self._inflight.pop(job.id, None)
        self._reasons.pop(job.id, None)
        self._lane_count[job.lane] -= 1
        if not task.cancelled() and task.exception() is not None:
            log.error("job %s: runner crashed", job.id, exc_info=task.exception())
        if not self._stopping:
            self.wake()

    async def _run(self, job: Job) -> None:
        current_job_id.set(job.id)  # this task's own context: its log lines carry the id
        try:
            model = self.catalog.get(job.model).for_job(job.meta)
        except Exception:
            await self._fail_unknown_model(job)
            return
        try:
            await self.runner.run(job, model)
        except asyncio.CancelledError:
            reason = self._reasons.get(job.id, _SHUTDOWN)
            await shielded(self._after_cancel(job, reason))
        except StaleLease:
            log.info("job %s: cancelled or taken over before it was submitted", job.id)
        except Exception as exc:
            if (shortage := resource_shortage(exc)) is not None:
                await shielded(self._hand_back(job, shortage))
                return
            log.exception("job %s: unexpected error", job.id)
            with contextlib.suppress(StaleLease):
                error = {
                    "code": "internal_error",
                    "message": "The gateway had an internal error running this job; "
                    "the details are in the server's log.",
                }
                await self.store.finish(
                    job.id,
                    job.lease_token,
                    Status.FAILED,
                    error=error,
                    attempts=job.attempts,
                    spend=spend_of(job),
                )
                job.error = error
                self.observer.job_finished(job, Status.FAILED)

    async def _hand_back(self, job: Job, shortage: str) -> None:
        """The machine ran short of something (EMFILE, ENOSPC, ...) while running ``job``:
        after a pause, hand it back to the queue, attempts and all, for this or another
        replica to resume; never fail accepted work for it. Should the store fail too, the
        job's lease runs out and the recovery loop hands it back instead."""
        log.warning("job %s: temporary resource exhaustion (%s); handing it back", job.id, shortage)
        await asyncio.sleep(HAND_BACK_PAUSE)
        try:
            await self.store.release(job.id, job.lease_token, job.attempts)
        except StaleLease:
            return
        except Exception:
            log.exception("job %s: could not hand it back; its lease will run out", job.id)
            return
        self.wake()

    async def _after_cancel(self, job: Job, reason: str) -> None:
        await self.runner.settle_submit(job)
        base = self.catalog.models.get(job.model)
        model = None if base is None else base.for_job(job.meta)
        if reason == _LOST:
            latest = await self.store.get_job(job.id)
            if latest is None or latest.status is not Status.CANCELLED:
                return  # another worker owns it now; leave its provider request alone
            reason = _CANCELLED
        if reason == _CANCELLED:
            if model is not None:
                await self.runner.cancel_provider(job, model)
            return
        # shutdown: hand the job back with its provider reference for the next owner
        await self.store.release(job.id, job.lease_token, job.attempts)

    async def _fail_unknown_model(self, job: Job) -> None:
        with contextlib.suppress(StaleLease):
            error = {
                "code": "model_not_found",
                "message": f"The model '{job.model}' is no longer in the catalog.",
            }
            await self.store.finish(
                job.id, job.lease_token, Status.FAILED, error=error, spend=spend_of(job)
            )
            job.error = error
            self.observer.job_finished(job, Status.FAILED)
