"""One INFO line per job transition, for an operator watching the terminal or the log.

``JobLog`` is a ``JobObserver`` (the seam the core reports to): each line is logged on
``backserv.jobs`` with structured fields beside the message, so a log pipeline filters on
them rather than on the wording: ``event`` (``queued``, ``processing``, ``submitted``,
``retrying``, ``fallback``, ``completed``, ``failed``, ``cancelled``), ``job_id``, ``model``,
``status``, and where known ``route``, ``provider``, ``provider_request_id``,
``duration_seconds`` (since the job was claimed; for ``processing``, how long it queued)
and ``error_code``.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from gateway.jobs import Job, Status
from gateway.observability.observer import JobObserver

__all__ = ["JobLog"]

log = logging.getLogger("backserv.jobs")


class JobLog(JobObserver):
    def __init__(self, logger: logging.Logger = log) -> None:
        self.log = logger

    def job_submitted(self, job: Job) -> None:
        self._line(job, "queued", Status.QUEUED, "job %s queued (model %s)", job.id, job.model)

    def job_claimed(self, job: Job) -> None:
        queued = max(0.0, (job.started_at or time.time()) - job.created_at)
        resumed = job.lease_token > 1
        self._line(
            job,
            "processing",
            Status.PROCESSING,
            "job %s %s (model %s) after %.1f s queued",
            job.id,
            "resumed" if resumed else "processing",
            job.model,
            queued,
            duration_seconds=round(queued, 3),
            resumed=resumed,
        )

    def provider_accepted(self, job: Job, route: str, request_id: str) -> None:
        self._line(
            job,
            "submitted",
            Status.PROCESSING,
            "job %s submitted to %s as %s",
            job.id,
            route,
            request_id,
            route=route,
            provider_request_id=request_id,
        )

    def retried(self, job: Job, provider: str, route: str) -> None:
        self._line(job, "retrying", Status.PROCESSING, "job %s retrying %s", job.id, route)

    def fell_back(self, job: Job, route: str) -> None:
        self._line(job, "fallback", Status.PROCESSING, "job %s falling back to %s", job.id, route)

    def job_finished(self, job: Job, status: Status) -> None:
        extra: dict[str, Any] = {}
        if job.started_at is not None:
            extra["duration_seconds"] = round(max(0.0, time.time() - job.started_at), 3)
        error_code = (job.error or {}).get("code") if status is Status.FAILED else None
        self._line(
            job,
            status.value.lower(),
            status,
            "job %s %s (model %s%s)",
            job.id,
            status.value.lower(),
            job.model,
            f", {error_code}" if error_code else "",
            error_code=error_code,
            **extra,
        )

    def _line(
        self, job: Job, event: str, status: Status, msg: str, *args: Any, **fields: Any
    ) -> None:
        if not self.log.isEnabledFor(logging.INFO):
            return
        last = job.attempts[-1] if job.attempts else None
        extra: dict[str, Any] = {
            "event": event,
            "job_id": job.id,
            "model": job.model,
            "status": status.value,
        }
        if last is not None:
            extra.setdefault("route", last.route)
            extra["provider"] = last.provider
            extra["provider_request_id"] = last.request_id
        extra.update({k: v for k, v in fields.items() if v is not None})
        self.log.info(msg, *args, extra=extra)
