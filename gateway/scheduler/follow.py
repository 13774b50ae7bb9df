"""Following a provider's request to its end, under the job's lease.

A request resumed from the attempt log is read at once (it may have ended while nobody
watched); a fresh one was just accepted, so the first read waits for its schedule (or its
webhook). Progress is saved at most every ``PROGRESS_SAVE_INTERVAL``, counted from the
reference's write: what changes within a job's first quarter second rides on the finish, and
a short job costs three writes: its attempt, its reference, its finish. A request that runs
past its route's limit is cancelled at the provider (scheduler/timeouts.py). A worker whose
lease may have passed to another stops following (``check_lease``), so two workers never
follow one job at once: its next owner resumes it from the log.
"""

from __future__ import annotations

import asyncio
import logging
import time

from gateway.errors import ProviderError, ProviderLostRequest, ProviderTransientError, StaleLease
from gateway.faults import unexpected_error
from gateway.jobs import Job
from gateway.scheduler.timeouts import RouteClock
from gateway.store.base import JobStore
from providers.base import Provider, ProviderRef, ProviderState, RouteSpec, StateKind

log = logging.getLogger("backserv.runner")  # the runner's records, as in outputs.py

PROGRESS_SAVE_INTERVAL = 0.25


async def follow(
    store: JobStore,
    job: Job,
    route: RouteSpec,
    provider: Provider,
    ref: ProviderRef,
    clock: RouteClock,
    *,
    resumed: bool,
    lease_margin: float,
) -> ProviderState:
    """Follow the request to its end (a terminal state), saving the job's progress on the
    way; ``resumed``: the request comes from the log, not from a submit just made."""
    last_saved = 0.0 if resumed else time.monotonic()
    dirty = False  # progress changed but was not saved yet (saves are throttled)
    check_lease(job, lease_margin)
    if resumed:
        state = await poll_once(job, provider, route, ref, None)
    else:
        state = ProviderState(StateKind.QUEUED)
    while not state.terminal:
        progress = min(99, max(job.progress, state.progress or 0))
        if (progress, state.queue_position) != (job.progress, job.queue_position):
            job.progress, job.queue_position = progress, state.queue_position
            dirty = True
        now = time.monotonic()
        if dirty and now - last_saved >= PROGRESS_SAVE_INTERVAL:
            last_saved, dirty = now, False
            await store.save_progress(job.id, job.lease_token, job.progress, job.queue_position)
        remaining = clock.at - time.time()
        if remaining <= 0:  # the request is stopped at the provider, then the next route
            await cancel_quietly(provider, route, ref)
            raise clock.expired(route)
        wait = min(remaining, 30.0, PROGRESS_SAVE_INTERVAL if dirty else 30.0)
        wait = min(wait, max(0.0, lease_left(job, lease_margin)))
        check_lease(job, lease_margin)
        state = await poll_once(job, provider, route, ref, wait)
    return state


def lease_left(job: Job, margin: float) -> float:
    """Seconds until this worker must assume its lease of ``job`` ran out, ``margin`` seconds
    before it expires (the heartbeat moves ``job.lease_expires`` on; under overload it may
    not have)."""
    if job.lease_expires is None:
        return float("inf")
    return job.lease_expires - margin - time.time()


def check_lease(job: Job, margin: float) -> None:
    """Stop working on a job whose lease may have passed to another worker, so two workers
    never follow one job at once; it is resumed from the log by its next owner."""
    if lease_left(job, margin) <= 0:
        raise StaleLease(f"job {job.id}: the lease ran out before it could be renewed")


async def poll_once(
    job: Job, provider: Provider, route: RouteSpec, ref: ProviderRef, wait: float | None
) -> ProviderState:
    """One read of the request's state: at once (``wait`` None), or waiting up to ``wait``
    seconds for news. A transient failure of the read is no failed job: after the provider's
    poll interval, it reads as still running."""
    try:
        try:
            if wait is None:
                return await provider.status(route, ref)
            return await provider.wait(route, ref, wait)
        except ProviderError:
            raise
        except Exception as exc:  # the provider did not translate it: never show its text
            raise unexpected_error(exc, who=who(route), job_id=job.id, log=log) from None
    except ProviderLostRequest:
        raise
    except ProviderTransientError:
        # a failed status read is not a failed job: keep following the same request
        await asyncio.sleep(provider.poll_interval)
        return ProviderState(StateKind.RUNNING)


async def cancel_quietly(provider: Provider, route: RouteSpec, ref: ProviderRef) -> None:
    """Stop the request at the provider; a failure (or no answer in 10 s) is only logged."""
    try:
        await asyncio.wait_for(provider.cancel(route, ref), timeout=10)
    except (ProviderError, TimeoutError) as exc:
        log.warning("cancel of %s on %s failed: %s", ref.request_id, route.name, exc)


def who(route: RouteSpec) -> str:
    """The route's provider, as an error's message names it."""
    return f"the {route.provider} provider"
