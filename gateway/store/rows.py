"""Turning a row of the jobs table into a ``Job``, and a job's attempts into the JSON of its
``attempts`` column: the same columns on every backend."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import orjson

from gateway.jobs import Attempt, Job, Status


def _loads(value: str | None) -> Any:
    return None if value is None else orjson.loads(value)


def dump_attempts(attempts: Iterable[Attempt]) -> str:
    """The ``attempts`` column: a JSON list of ``Attempt.to_dict``."""
    return orjson.dumps([a.to_dict() for a in attempts]).decode()


def row_to_job(row: Any) -> Job:
    """A job from a row of the stores' ``JOB_COLUMNS`` (same names, same order)."""
    return Job(
        id=row[0],
        owner=row[1],
        kind=row[2],
        model=row[3],
        lane=row[4],
        status=Status(row[5]),
        priority=row[6],
        progress=row[7],
        queue_position=row[8],
        input=orjson.loads(row[9]),
        result=_loads(row[10]),
        error=_loads(row[11]),
        attempts=[Attempt.from_dict(a) for a in orjson.loads(row[12])],
        meta=orjson.loads(row[13]),
        created_at=row[14],
        updated_at=row[15],
        started_at=row[16],
        completed_at=row[17],
        lease_token=row[18],
        lease_owner=row[19],
        lease_expires=row[20],
        idempotency_key=row[21],
        request_hash=row[22],
        files_purged_at=row[23],
    )
