"""``GET /api/v1/tasks/``: offset paging and filters, each a predicate of one store query.

``status``, the ``origin_*`` / ``workflow_id`` filters (``job.meta`` values), ``task_type``
and ``skip`` all go to the store (``JobStore.list_jobs``): a page is one query, whose cost is
the database skipping ``skip`` rows. ``task_type`` becomes the kinds that show as that task
type (``schemas.KIND_TASKS``: jobs made by the other faces carry a kind, not a task type;
REFINE is also every ``upscale`` job, EDITING every ``face_swap`` one).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from gateway.api.tasks.schemas import KIND_TASKS, TaskType
from gateway.jobs import Job, Status
from gateway.service import JobService

MAX_SKIP = 100_000
MAX_LIMIT = 1_000


@dataclass(frozen=True)
class TaskFilter:
    status: Status | None = None
    task_type: TaskType | None = None
    #: exact ``job.meta`` values (``origin_instance``, ``origin_tenant_id``, ...)
    meta: dict[str, str] = field(default_factory=dict)


def kinds_of(task_type: TaskType) -> list[str]:
    """The job kinds that show as ``task_type``."""
    return sorted(kind for kind, task in KIND_TASKS.items() if task is task_type)


async def list_tasks(
    service: JobService, owner: str, filters: TaskFilter, *, skip: int, limit: int
) -> list[Job]:
    """The owner's tasks, newest first, after ``skip`` of them."""
    jobs, _ = await service.list(
        owner,
        limit=limit,
        after=None,
        status=filters.status,
        model=None,
        meta=filters.meta or None,
        kinds=None if filters.task_type is None else kinds_of(filters.task_type),
        offset=skip,
    )
    return jobs
