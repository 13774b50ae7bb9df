"""A finished request's outputs, saved to result storage and turned into the job's result.

Saving is where a job that has been paid for can still be lost, so it is patient: the
machine running short of files, memory or disk (EMFILE, ENOSPC, ...) or the result bucket
out of reach is waited out until the job's deadline, the output in hand, so nothing runs
(or is paid for) again; past the deadline the job fails (``ResultNotStored``), never run
again; any other failure is the scheduler's internal error.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import Any

from gateway.errors import (
    ProviderError,
    ProviderResourceExhausted,
    ProviderUnavailable,
    ResultNotStored,
    StorageUnavailable,
)
from gateway.faults import resource_shortage, unexpected_error
from gateway.jobs import Job
from gateway.scheduler.retry import RetryPolicy
from gateway.storage import ResultStorage, StoredFile
from providers.base import Output, ProviderState

log = logging.getLogger("backserv.runner")

#: (width, height) of each saved file, in order: what a per-megapixel price is counted on
Sizes = list[tuple[int | None, int | None]]


class OutputSaver:
    def __init__(self, storage: ResultStorage, policy: RetryPolicy, job_timeout: float) -> None:
        self.storage = storage
        self.policy = policy
        self.job_timeout = job_timeout

    async def save(
        self, job: Job, state: ProviderState, check_lease: Callable[[Job], None]
    ) -> tuple[dict[str, Any], Sizes]:
        """Save every output of ``state``; the job's ``result`` and the files' sizes.
        ``check_lease`` is called before each wait (a job whose lease ran out stops)."""
        files = []
        sizes: Sizes = []
        for i, output in enumerate(state.outputs):
            stored = await self._save_one(job, i, output, check_lease)
            sizes.append((stored.width, stored.height))
            files.append(
                {
                    "name": stored.name,
                    "content_type": stored.content_type,
                    "width": stored.width,
                    "height": stored.height,
                }
            )
        if not files:
            raise ProviderUnavailable("the provider succeeded but returned no output")
        result: dict[str, Any] = {"files": files}
        seed = state.seed if state.seed is not None else job.input.get("seed")
        if seed is not None:
            result["seed"] = seed
        for key in ("duration", "fps"):
            if key in job.input:
                result[key] = job.input[key]
        return result, sizes

    async def _save_one(
        self, job: Job, index: int, output: Output, check_lease: Callable[[Job], None]
    ) -> StoredFile:
        deadline = (job.started_at or time.time()) + self.job_timeout
        tries = 0
        while True:
            tries += 1
            try:
                return await self.storage.save(job.id, index, output)
            except StorageUnavailable as exc:
                log.warning("job %s: %s", job.id, exc.message, extra={"job_id": job.id})
                error: ProviderError = ProviderResourceExhausted(
                    f"The result storage could not be written: {exc.message}"
                )
            except Exception as exc:
                if isinstance(exc, ProviderError) or resource_shortage(exc) is None:
                    raise
                error = unexpected_error(exc, who="the result storage", job_id=job.id, log=log)
            delay = self.policy.decide(error, tries)
            if delay is None or time.time() + delay > deadline:
                # the output is in hand and paid for: never a reason to run the job again
                raise ResultNotStored(f"{error.message} (the output was not stored in time)")
            check_lease(job)
            await asyncio.sleep(delay)
