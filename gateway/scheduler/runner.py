"""Running one claimed job: walk its route chain, follow the provider, store the result.

The attempt log is the job's memory across crashes. Each attempt records its route, the
provider's request reference (persisted as soon as the provider returns it), and how it
ended. A job claimed again after a crash resumes an open attempt that has a reference by
polling it, so it is never paid for twice; an open attempt without a reference is closed
as interrupted and submitted again (its submit may have reached the provider: the one
window the README's delivery guarantee describes).

A failed job's error names every route of its chain (scheduler/summary.py); a route that
runs past its own limit is cancelled at the provider and the next one tried
(scheduler/timeouts.py). The chain is walked as listed, or, for a model whose routes are
interchangeable, cheapest first (scheduler/choice.py); each attempt records its route and
its place in that order. A request, once submitted, is followed to its end (its reads, its
progress saves, its lease checks) by scheduler/follow.py.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from gateway.catalog import CatalogModel
from gateway.errors import (
    ProviderError,
    ProviderInputError,
    ProviderLostRequest,
    ProviderResourceExhausted,
    ProviderResultLost,
    ProviderSubmitUncertain,
    ProviderTransientError,
    ProviderUnavailable,
    ResultNotStored,
    StaleLease,
)
from gateway.faults import unexpected_error
from gateway.jobs import Attempt, Job, Outcome, Status
from gateway.observability.observer import JobObserver
from gateway.pricing import Price, Report, estimate, final
from gateway.scheduler.availability import Availability
from gateway.scheduler.breaker import Breakers
from gateway.scheduler.choice import RouteLatencies, walk_order
from gateway.scheduler.follow import cancel_quietly, check_lease, follow, who
from gateway.scheduler.outputs import OutputSaver
from gateway.scheduler.retry import RetryPolicy
from gateway.scheduler.shielded import shielded
from gateway.scheduler.summary import Skipped, summarise
from gateway.scheduler.timeouts import RouteClock
from gateway.spend import spend_of
from gateway.storage import ResultStorage
from gateway.store.base import JobStore
from providers.base import Provider, ProviderRef, ProviderState, RouteSpec, StateKind

log = logging.getLogger("backserv.runner")

#: errors that end the job at once: no retry, no fallback (a fallback cannot fix a bad
#: prompt, and a submit that may have been accepted must not be paid for twice)
FATAL_ERRORS = (ProviderInputError, ProviderSubmitUncertain, ProviderResultLost, ResultNotStored)
#: errors that say something about a route's health (they feed its circuit breaker); the
#: gateway's own resource shortages (ProviderResourceExhausted) do not
HEALTH_ERRORS = (ProviderTransientError, ProviderUnavailable, ProviderSubmitUncertain)


#: the error of an open attempt without a reference, found by the job's next owner
INTERRUPTED = {
    "code": "interrupted",
    "message": "the gateway stopped before the provider's answer was recorded",
}


def error_dict(exc: ProviderError) -> dict[str, Any]:
    return {"code": exc.code or "provider_error", "message": exc.message}


class JobRunner:
    def __init__(
        self,
        store: JobStore,
        providers: dict[str, Provider],
        storage: ResultStorage,
        policy: RetryPolicy,
        *,
        job_timeout: float,
        breakers: Breakers | None = None,
        breaker_wait: float = 60.0,
        lease_margin: float = 0.0,
        observer: JobObserver | None = None,
        route_timeout: float | None = None,
        prices: Mapping[str, Price] | None = None,
    ) -> None:
        #: route name -> its price (the catalog's); a route not in it is unpriced
        self.prices = prices or {}
        self.observer = observer or JobObserver()
        #: the default limit of a route that has a fallback (gateway/scheduler/timeouts.py)
        self.route_timeout = route_timeout
        self.lease_margin = lease_margin
        self.breakers = breakers or Breakers()
        #: each route's recent successful durations here: the tie-break among equal prices
        self.latencies = RouteLatencies()
        self.availability = Availability(providers, self.breakers)
        self._submitting: dict[str, asyncio.Future[ProviderRef]] = {}
        self.breaker_wait = breaker_wait
        self.store = store
        self.providers = providers
        self.storage = storage
        self.policy = policy
        self.job_timeout = job_timeout
        self.outputs = OutputSaver(storage, policy, job_timeout)

    @property
    def provider_names(self) -> frozenset[str]:
        """The providers this runner can run routes on."""
        return frozenset(self.providers)

    async def run(self, job: Job, model: CatalogModel) -> None:
        """Run ``job`` to a terminal state, or raise CancelledError leaving the log current."""
        deadline = (job.started_at or time.time()) + self.job_timeout
        order, start = walk_order(
            model, job.input, job.attempts, self.prices, self.availability, self.latencies
        )
        waited = 0.0
        skipped: dict[int, Skipped] = {}
        while True:
            error, reopen_at = await self._walk(job, model, order[start:], start, deadline, skipped)
            if error is None:
                return
            now = time.monotonic()
            if reopen_at is None or waited >= self.breaker_wait or time.time() >= deadline:
                break
            # every usable route's breaker is open: wait (bounded) rather than fail at once
            delay = max(
                0.05, min(reopen_at - now, self.breaker_wait - waited, deadline - time.time())
            )
            log.info("job %s: every route's circuit is open; waiting %.1fs", job.id, delay)
            await asyncio.sleep(delay)
            waited += delay
        summary = summarise(
            model.routes,
            job.attempts,
            skipped,
            error,
            fatal=isinstance(error, FATAL_ERRORS),
            timed_out=time.time() >= deadline,
            order=order,
        )
        await self._finish(job, Status.FAILED, error=summary)

    async def _walk(
        self,
        job: Job,
        model: CatalogModel,
        indices: list[int],
        first_place: int,
        deadline: float,
        skipped: dict[int, Skipped],
    ) -> tuple[ProviderError | None, float | None]:
        """Try the routes ``indices`` (of ``model.routes``) in order, the first of them at
        ``first_place`` in the job's walk. Returns (None, None) once the job is terminal, else
        the last error and, when only open circuits stood in the way, when the first reopens.
        ``skipped`` is filled with the routes passed over without a submit, and why."""
        last_error: ProviderError | None = None
        reopen_at: float | None = None
        tried = False
        skipped.clear()
        total = first_place + len(indices)
        for place, index in enumerate(indices, start=first_place):
            if time.time() >= deadline:
                break
            route = model.routes[index]
            check = self.availability.check(route, claim=True)
            provider = check.provider
            if provider is None or not check.configured:
                reason = check.reason or f"the '{route.provider}' provider is not enabled"
                last_error = ProviderUnavailable(reason)
                skipped[index] = Skipped(last_error, "not configured")
                continue
            if not check.admitted:
                at = check.reopens_at or time.monotonic()
                reopen_at = at if reopen_at is None else min(reopen_at, at)
                last_error = ProviderUnavailable(
                    "paused after repeated failures (circuit open)", code="circuit_open"
                )
                skipped[index] = Skipped(last_error, "circuit open")
                continue
            tried = True
            if place > 0 and (not job.attempts or job.attempts[-1].route_index != index):
                self.observer.fell_back(job, route.name)
            where = _Place(index, place if model.interchangeable else None, place < total - 1)
            outcome = await self._run_route(job, model, where, route, provider, deadline)
            if outcome is None:
                return None, None
            last_error = outcome
            if isinstance(outcome, FATAL_ERRORS):
                return outcome, None
        error = last_error or ProviderUnavailable("the model has no usable route")
        return error, (None if tried else reopen_at)

    async def _run_route(
        self,
        job: Job,
        model: CatalogModel,
        where: _Place,
        route: RouteSpec,
        provider: Provider,
        deadline: float,
    ) -> ProviderError | None:
        """Try one route (with retries); None when the job reached a terminal state.

        The route's breaker is looked up at each use, not held: an idle one may be dropped
        while the job runs (``gateway.scheduler.breaker.Breakers``), and the verdict must
        reach the breaker that guards the route then."""
        clock = RouteClock(
            route,
            index=where.index,
            fallback=where.fallback,
            attempts=job.attempts,
            job_deadline=deadline,
            default=self.route_timeout,
            now=time.time(),
        )
        tries = 0
        try:
            while True:
                tries += 1
                # checked before an attempt is logged: one logged without a submit would
                # look like a crash in the submit window to the job's next owner
                self._check_lease(job)
                attempt = await self._open_attempt(job, where, route)
                try:
                    resumed = attempt.request_id is not None
                    ref = await self._ensure_submitted(job, attempt, route, provider)
                    state = await follow(
                        self.store,
                        job,
                        route,
                        provider,
                        ref,
                        clock,
                        resumed=resumed,
                        lease_margin=self.lease_margin,
                    )
                    self.observer.provider_ended(route.provider, state.via)
                    if state.kind is StateKind.SUCCEEDED:
                        await self._complete(job, model, attempt, state)
                        self.breakers.get(route.name).record(ok=True)
                        return None
                except ProviderError as exc:
                    state = ProviderState(StateKind.FAILED, error=exc)
                error = state.error or ProviderUnavailable("the provider cancelled the request")
                # what the provider bills for a failure: the compute it reports, if any
                report = Report(succeeded=False, compute_seconds=state.compute_seconds)
                attempt.cost = final(self.prices.get(attempt.route), job.input, report)
                self._close_attempt(attempt, Outcome.FAILED, error)
                breaker = self.breakers.get(route.name)
                if isinstance(error, ProviderResourceExhausted):
                    breaker.release_probe()  # no verdict: a probe may be tried again
                elif isinstance(error, HEALTH_ERRORS):
                    breaker.record(ok=False)
                if isinstance(error, ProviderLostRequest) and not provider.free_resubmit:
                    # e.g. a result expired while the gateway was down: running it again
                    # would be paid for twice, so the job fails and says why
                    await self._save_attempts(job)
                    return ProviderResultLost(
                        f"{error.message} {ProviderResultLost.default_message}"
                    )
                delay = self.policy.decide(error, tries)
                if delay is None or time.time() + delay > clock.at or not breaker.allow():
                    await self._save_attempts(job)
                    return error
                self.observer.retried(job, route.provider, route.name)
                log.info(
                    "job %s: retrying %s in %.2fs after %s",
                    job.id,
                    route.name,
                    delay,
                    error.code,
                    extra={"job_id": job.id},
                )
                await self._save_attempts(job)
                await asyncio.sleep(delay)
        finally:
            self.breakers.get(route.name).release_probe()

    async def _open_attempt(self, job: Job, where: _Place, route: RouteSpec) -> Attempt:
        """The attempt to work on: an open one with a provider reference is resumed; an open
        one without is closed as interrupted (its submit may or may not have reached the
        provider: the one window documented in the README); otherwise a new one is logged,
        persisted *before* the submit so a job cancelled meanwhile is never submitted."""
        last = job.attempts[-1] if job.attempts else None
        if last is not None and last.open:
            if last.request_id and last.route_index == where.index:
                return last
            last.close(Outcome.INTERRUPTED, dict(INTERRUPTED))
        attempt = Attempt(
            n=len(job.attempts) + 1,
            route=route.name,
            route_index=where.index,
            provider=route.provider,
            started_at=time.time(),
            estimate=estimate(self.prices.get(route.name), job.input),
            place=where.place,
        )
        job.attempts.append(attempt)
        await shielded(
            self.store.save_attempts(job.id, job.lease_token, job.attempts, active_only=True)
        )
        return attempt

    def _close_attempt(
        self, attempt: Attempt, outcome: Outcome, error: ProviderError | None
    ) -> None:
        ended = time.time()
        attempt.close(outcome, None if error is None else error_dict(error), ended)
        provider = self.providers.get(attempt.provider)
        if provider is not None and attempt.request_id:
            polls = provider.poll_counts.take(attempt.request_id)
            self.observer.provider_polled(attempt.provider, polls)
        if outcome is not Outcome.CANCELLED:  # a user's cancel is no verdict on the provider
            seconds = ended - attempt.started_at
            self.observer.provider_done(attempt.provider, outcome.value, seconds)
            if outcome is Outcome.SUCCEEDED:
                self.latencies.record(attempt.route, seconds)

    async def _ensure_submitted(
        self, job: Job, attempt: Attempt, route: RouteSpec, provider: Provider
    ) -> ProviderRef:
        if attempt.request_id:
            return ProviderRef(attempt.request_id, attempt.ref or {})
        # A submit in flight is not interrupted by a cancel or a shutdown: the provider may
        # be accepting (and billing) it, so its reference must be recorded, to be cancelled
        # or handed on. ``settle_submit`` lets the canceller wait for it.
        task = asyncio.ensure_future(self._submit_and_record(job, attempt, route, provider))
        self._submitting[job.id] = task
        task.add_done_callback(functools.partial(self._submit_done, job.id))
        return await asyncio.shield(task)

    async def _submit_and_record(
        self, job: Job, attempt: Attempt, route: RouteSpec, provider: Provider
    ) -> ProviderRef:
        try:
            ref = await provider.submit(route, job.input, job_id=job.id, kind=job.kind)
        except ProviderError:
            raise
        except Exception as exc:  # the provider did not translate it: never show its text
            error = unexpected_error(exc, who=who(route), job_id=job.id, log=log)
            if provider.free_resubmit:
                raise error from None
            # it may have reached a provider that bills for it: never submitted again
            raise ProviderSubmitUncertain(
                f"{error.message} {ProviderSubmitUncertain.default_message}"
            ) from None
        attempt.request_id = ref.request_id
        attempt.ref = ref.data
        await self.store.save_attempts(job.id, job.lease_token, job.attempts)
        self.observer.provider_accepted(job, route.name, ref.request_id)
        return ref

    def _submit_done(self, job_id: str, task: asyncio.Future[ProviderRef]) -> None:
        if self._submitting.get(job_id) is task:
            del self._submitting[job_id]
        if not task.cancelled():
            task.exception()  # retrieved: the awaiting runner (or nobody) handles it

    async def settle_submit(self, job: Job, timeout: float = 60.0) -> None:
        """Wait (bounded) for a submit of ``job`` still in flight, so its reference is known."""
        task = self._submitting.get(job.id)
        if task is not None:
            with contextlib.suppress(Exception, TimeoutError):
                await asyncio.wait_for(asyncio.shield(task), timeout)

    def _check_lease(self, job: Job) -> None:
        """Stop working on a job whose lease may have passed to another worker (follow.py)."""
        check_lease(job, self.lease_margin)

    async def _complete(
        self, job: Job, model: CatalogModel, attempt: Attempt, state: ProviderState
    ) -> None:
        result, sizes = await self.outputs.save(job, state, self._check_lease)
        report = Report(succeeded=True, sizes=sizes, compute_seconds=state.compute_seconds)
        attempt.cost = final(self.prices.get(attempt.route), job.input, report)
        self._close_attempt(attempt, Outcome.SUCCEEDED, None)
        await self._finish(job, Status.COMPLETED, result=result)

    async def _finish(
        self,
        job: Job,
        status: Status,
        *,
        result: dict[str, Any] | None = None,
        error: dict[str, Any] | None = None,
    ) -> None:
        write = self.store.finish(
            job.id,
            job.lease_token,
            status,
            result=result,
            error=error,
            attempts=job.attempts,
            spend=spend_of(job),
        )
        try:
            await shielded(write)
        except StaleLease:
            log.info("job %s: finished elsewhere or cancelled; result dropped", job.id)
            return
        job.error = error  # as stored: what the observers report
        self.observer.job_finished(job, status)

    async def _save_attempts(self, job: Job) -> None:
        await shielded(self.store.save_attempts(job.id, job.lease_token, job.attempts))

    async def cancel_provider(self, job: Job, model: CatalogModel) -> None:
        """After a user cancel: stop the provider's request and close the attempt."""
        attempt = job.attempts[-1] if job.attempts else None
        if attempt is None or not attempt.open:
            return
        route = model.routes[attempt.route_index]
        provider = self.providers.get(route.provider)
        if provider is not None and attempt.request_id:
            await cancel_quietly(
                provider, route, ProviderRef(attempt.request_id, attempt.ref or {})
            )
        self._close_attempt(attempt, Outcome.CANCELLED, None)
        with contextlib.suppress(StaleLease):
            await self.store.save_attempts(job.id, job.lease_token, job.attempts)


@dataclass(frozen=True)
class _Place:
    """Where a route stands in a job's walk."""

    #: its index in the model's routes
    index: int
    #: its place in the walk, recorded on its attempts (None: the walk is the chain's order)
    place: int | None
    #: another route follows it in the walk
    fallback: bool
