"""The stores' status guards come from the transition table (gateway/store/transitions.py)."""

from __future__ import annotations

import pytest

from gateway.jobs import Status, sources_of
from gateway.store import postgres_schema as pg
from gateway.store.transitions import (
    CANCELLABLE,
    CLAIMABLE,
    FINISHABLE,
    RELEASABLE,
    may_become,
)


@pytest.mark.parametrize(
    ("target", "guard"),
    [
        (Status.PROCESSING, "status = 'QUEUED'"),
        (Status.COMPLETED, "status = 'PROCESSING'"),
        (Status.FAILED, "status = 'PROCESSING'"),
        (Status.QUEUED, "status = 'PROCESSING'"),
        (Status.CANCELLED, "status IN ('QUEUED', 'PROCESSING')"),
    ],
)
def test_a_guard_accepts_exactly_the_tables_sources(target: Status, guard: str) -> None:
    assert may_become(target) == guard
    assert all(f"'{s.value}'" in guard for s in sources_of(target))


def test_targets_reached_from_different_statuses_need_a_guard_each() -> None:
    with pytest.raises(ValueError, match="not reached from the same statuses"):
        may_become(Status.COMPLETED, Status.CANCELLED)


@pytest.mark.parametrize(
    ("statement", "guard"),
    [
        (pg.CLAIM, CLAIMABLE),
        (pg.CANCEL, CANCELLABLE),
        (pg.FINISH, FINISHABLE),
        (pg.RELEASE, RELEASABLE),
        (pg.REQUEUE_EXPIRED, RELEASABLE),
    ],
)
def test_postgres_status_changes_are_guarded_by_the_table(statement: str, guard: str) -> None:
    assert guard in statement
