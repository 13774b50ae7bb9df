"""``PUT``: which of the document's update fields a request changes, and whether it may.

A field sent as null, or with the value the task already shows, changes nothing (so the
document's all-null example, or update fields sent back as they were read, is a no-op). Of
the rest:

- ``status`` may only become ``CANCELLED``: that cancels the task, as ``POST …/cancel``;
- ``priority``, ``config``, ``fal_app_id``, ``fal_parameters`` are the client's to change:
  ``config`` is stored; the others change while the task is PENDING (else 409): a new
  ``fal_app_id`` re-routes the task (checked as at creation), new ``fal_parameters`` are
  EXPERIMENTAL_FAL's new input;
- every other field the document lists (``errors``, ``executor_*``, timestamps, ...) is the
  gateway's own: 422;
- a field the task type's update schema does not have: 422 ``extra_forbidden``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError

from gateway.api.tasks.errors import TaskValidationError, from_pydantic
from gateway.api.tasks.schemas import (
    GENERATION_UPDATE,
    UPDATE_FIELDS,
    WRITABLE,
    TaskType,
    TaskUpdate,
)


@dataclass(frozen=True)
class Changes:
    cancel: bool = False
    priority: int | None = None
    config: dict[str, Any] | None = None
    fal_app_id: str | None = None
    fal_parameters: dict[str, Any] | None = None

    @property
    def reroutes(self) -> bool:
        return self.fal_app_id is not None or self.fal_parameters is not None


def requested_changes(
    task_type: TaskType, body: dict[str, Any], current: dict[str, Any], *, generation: bool
) -> Changes:
    """What the update changes (cancel, priority, config); raises for anything it may not
    do."""
    allowed = GENERATION_UPDATE if generation else UPDATE_FIELDS[task_type]
    extra = [
        {"loc": ["body", name], "msg": "Extra inputs are not permitted", "type": "extra_forbidden"}
        for name in body
        if name not in allowed
    ]
    if extra:
        raise TaskValidationError(extra)
    try:
        typed = TaskUpdate.model_validate(body).model_dump()
    except ValidationError as exc:
        raise from_pydantic(exc) from None
    changed = {
        name: typed.get(name, value)
        for name, value in body.items()
        if value is not None and typed.get(name, value) != current.get(name)
    }
    read_only = [
        {
            "loc": ["body", name],
            "msg": f"'{name}' is set by the gateway; it cannot be updated",
            "type": "value_error",
        }
        for name in changed
        if name not in WRITABLE
    ]
    if changed.get("status", "CANCELLED") != "CANCELLED":
        read_only.append(
            {
                "loc": ["body", "status"],
                "msg": "Only 'CANCELLED' may be set: it cancels the task",
                "type": "value_error",
            }
        )
    if read_only:
        raise TaskValidationError(read_only)
    priority, config = changed.get("priority"), changed.get("config")
    fal_app_id, fal_parameters = changed.get("fal_app_id"), changed.get("fal_parameters")
    return Changes(
        cancel="status" in changed,
        priority=None if priority is None else int(priority),
        config=dict(config) if isinstance(config, dict) else None,
        fal_app_id=str(fal_app_id) if fal_app_id is not None else None,
        fal_parameters=dict(fal_parameters) if isinstance(fal_parameters, dict) else None,
    )
