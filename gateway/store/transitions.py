"""The transition table (``gateway.jobs.TRANSITIONS``) as the guards of the stores' SQL.

Every statement that changes a job's status is a conditional UPDATE whose guard is
``may_become(target)``: the row's status is one the table lets become ``target``. The table
is the one truth; no store writes its own list of statuses for a transition.
"""

from __future__ import annotations

from gateway.jobs import Status, sources_of

#: the statuses ``JobStore.finish`` writes (a cancel, a hand-back and a claim have their own)
FINISHED_BY_RUNNER = (Status.COMPLETED, Status.FAILED)


def may_become(*targets: Status) -> str:
    """The SQL condition that a job's ``status`` column may become each of ``targets``
    (the same text on SQLite and PostgreSQL: ``status = 'X'`` or ``status IN ('X', 'Y')``).
    Targets with different sources need a guard each: ValueError."""
    sources = {sources_of(target) for target in targets}
    if len(sources) != 1:
        raise ValueError(f"{', '.join(targets)} are not reached from the same statuses")
    [statuses] = sources
    if not statuses:
        raise ValueError(f"no status may become {', '.join(targets)}")
    if len(statuses) == 1:
        return f"status = '{statuses[0].value}'"
    return "status IN (" + ", ".join(f"'{s.value}'" for s in statuses) + ")"


#: the guards of the status-changing statements, one per transition a store writes
CLAIMABLE = may_become(Status.PROCESSING)
CANCELLABLE = may_become(Status.CANCELLED)
FINISHABLE = may_become(*FINISHED_BY_RUNNER)
RELEASABLE = may_become(Status.QUEUED)  # a hand-back: released, or its lease expired


def check_finish(status: Status) -> None:
    """``JobStore.finish`` writes COMPLETED or FAILED only (its guard is theirs)."""
    if status not in FINISHED_BY_RUNNER:
        raise ValueError(f"finish() writes COMPLETED or FAILED, not {status.value}")
