"""``GET /api/v1/tasks/``: offset paging and filters over the core's cursor-paged listing.

``status`` and the ``origin_*`` / ``workflow_id`` filters go to the store (``JobStore.list_jobs``
filters on status and on ``job.meta`` values); ``task_type`` is matched here, because jobs made
by the other faces carry no task type, only a kind. ``skip`` is paged through with the cursor,
so a page costs ``skip + limit`` rows read (more with ``task_type``); both are bounded, and a
listing that reads ``MAX_SCANNED`` rows without filling its page stops there and says so in
the ``X-Tasks-Scan-Truncated`` header. (An offset and a kind filter in the store would make
these single queries: see README, "The Tasks API".)
"""

from __future__ import annotations

from dataclasses import dataclass, field

from gateway.api.tasks.ids import task_id_of
from gateway.api.tasks.render import task_type_of
from gateway.api.tasks.schemas import TaskType
from gateway.jobs import Job, JobService, Status

MAX_SKIP = 10_000
MAX_LIMIT = 1_000
MAX_SCANNED = 20_000
PAGE_MIN, PAGE_MAX = 20, 500


@dataclass(frozen=True)
class TaskFilter:
    status: Status | None = None
    task_type: TaskType | None = None
    #: exact ``job.meta`` values (``origin_instance``, ``origin_tenant_id``, ...)
    meta: dict[str, str] = field(default_factory=dict)


async def list_tasks(
    service: JobService, owner: str, filters: TaskFilter, *, skip: int, limit: int
) -> tuple[list[Job], bool]:
    """The owner's tasks, newest first, after ``skip`` of them; and whether the scan stopped
    at ``MAX_SCANNED`` rows before the page was full."""
    found: list[Job] = []
    skipped = scanned = 0
    after: str | None = None
    while len(found) < limit:
        size = min(PAGE_MAX, max(PAGE_MIN, skip - skipped + limit - len(found)))
        page, more = await service.list(
            owner,
            limit=size,
            after=after,
            status=filters.status,
            model=None,
            meta=filters.meta or None,
        )
        for job in page:
            scanned += 1
            task_type = task_type_of(job)
            if task_type is None or task_id_of(job.id) is None:
                continue
            if filters.task_type is not None and task_type is not filters.task_type:
                continue
            if skipped < skip:
                skipped += 1
                continue
            found.append(job)
            if len(found) >= limit:
                break
        if not more or not page:
            return found, False
        if scanned >= MAX_SCANNED and len(found) < limit:
            return found, True
        after = page[-1].id
    return found, False
