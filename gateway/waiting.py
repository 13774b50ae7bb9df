"""Waiting for a job to change or finish without polling the database.

A waiter registers with the in-process change hub (``JobEvents``) *before* it reads the job,
so no change can slip between the read and the wait, then sleeps until the job changes (one
read per change) or the deadline passes.
"""

from __future__ import annotations

import time

from gateway.events import JobEvents
from gateway.jobs import Job
from gateway.store.base import JobStore


async def wait_until_terminal(store: JobStore, events: JobEvents, job: Job, timeout: float) -> Job:
    """The job once it is terminal, or as it is when ``timeout`` seconds have passed."""
    if job.status.terminal or timeout <= 0:
        return job
    deadline = time.monotonic() + timeout
    with events.watch(job.id) as watch:
        latest = await store.get_job(job.id) or job
        while not latest.status.terminal:
            remaining = deadline - time.monotonic()
            if remaining <= 0 or not await watch.changed(remaining):
                break
            latest = await store.get_job(job.id) or latest
    return latest
