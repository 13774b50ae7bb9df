"""Task ids: every job's UUID, derived from its job id and back, with no lookup table.

A job id is ``job-`` and 24 hex digits (96 random bits, ``gateway.jobs.new_job_id``); a UUID
has 32. The task id of a job puts those 24 digits into a version-8 ("custom") UUID, whose
remaining digits are fixed (``8`` version, ``a`` variant, ``000000`` tail)::

    job-0123456789abcdef01234567  <->  01234567-89ab-8cde-af01-234567000000

So every job, whichever face created it, has a task id; a task id names its job directly (one
indexed read by primary key); and a UUID that does not have the fixed digits was never made
here (404 without a read).
"""

from __future__ import annotations

import re
import uuid

_JOB_ID = re.compile(r"^job-([0-9a-f]{24})$")
VERSION, VARIANT, TAIL = "8", "a", "000000"


def task_id_of(job_id: str) -> str | None:
    """The job's task id, or None for an id not of the ``job-`` + 24 hex form."""
    match = _JOB_ID.match(job_id)
    if match is None:
        return None
    h = match.group(1)
    return str(uuid.UUID(hex=h[:12] + VERSION + h[12:15] + VARIANT + h[15:24] + TAIL))


def parse_task_id(value: str) -> uuid.UUID:
    """The UUID in ``value``; ValueError when it is not one (any of uuid.UUID's spellings)."""
    return uuid.UUID(value)


def job_id_of(task_id: uuid.UUID) -> str | None:
    """The job id a task id was made from, or None when the UUID was not made by this gateway."""
    h = task_id.hex
    if h[12] != VERSION or h[16] != VARIANT or h[26:] != TAIL:
        return None
    return "job-" + h[:12] + h[13:16] + h[17:26]
