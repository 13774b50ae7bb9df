"""Spend: a job's usage (its attempts' costs), the rows it adds to the usage ledger, and
the per-key budgets a submit is charged against.

A priced job carries ``meta["spend"]``: ``estimate`` (micros, from its first route's price
and its input), ``currency``, and, when its key has a budget, ``charged`` (the estimate the
submit reserved) with the UTC ``day`` and ``month`` it was reserved in. When the job ends,
the store records ``spend_of(job)`` in the same transaction as the end: one usage row per
priced attempt, and the settlement of the key's running totals (what the job cost, less
what its submit reserved). So the totals a budget is checked against are every finished
job's cost plus the estimates of the jobs still running, and hold across restarts.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from gateway.jobs import Job
from gateway.pricing import DEFAULT_CURRENCY, money

#: the budget periods, as the API and the CLI name them
PERIODS = ("daily", "monthly", "total")


@dataclass(frozen=True)
class Budgets:
    """A key's budgets in micros of the catalog's currency; None: no budget for the period."""

    daily: int | None = None
    monthly: int | None = None
    total: int | None = None

    @property
    def any(self) -> bool:
        return any(v is not None for v in (self.daily, self.monthly, self.total))


@dataclass(frozen=True)
class Spent:
    """A key's running totals in micros: today (UTC), this month (UTC) and ever."""

    daily: int = 0
    monthly: int = 0
    total: int = 0


def day_and_month(at: float | None = None) -> tuple[str, str]:
    """The UTC day (``2025-01-31``) and month (``2025-01``) of ``at`` (default: now)."""
    day = time.strftime("%Y-%m-%d", time.gmtime(time.time() if at is None else at))
    return day, day[:7]


@dataclass(frozen=True)
class JobUsage:
    cost: int
    currency: str
    priced: bool
    estimate: int | None

    def to_dict(self) -> dict[str, Any]:
        """``usage`` on a job object: ``cost`` (a number of ``currency``, null when any of
        its attempts is unpriced), ``priced``, and the submit's ``estimate``."""
        return {
            "cost": money(self.cost) if self.priced else None,
            "currency": self.currency,
            "priced": self.priced,
            "estimate": None if self.estimate is None else money(self.estimate),
        }


def _meta(job: Job) -> dict[str, Any]:
    found = job.meta.get("spend")
    return found if isinstance(found, dict) else {}


def job_usage(job: Job) -> JobUsage:
    """What ``job`` costs so far: the sum of its attempts' charges (a failed attempt the
    provider billed included); priced when every attempt is (or, before any, the job)."""
    meta = _meta(job)
    estimate = meta.get("estimate")
    priced = all(a.priced for a in job.attempts) if job.attempts else isinstance(estimate, int)
    cost = sum(a.charge for a in job.attempts)
    return JobUsage(cost, str(meta.get("currency") or DEFAULT_CURRENCY), priced, estimate)


@dataclass(frozen=True)
class UsageRow:
    """One priced attempt in the usage ledger (unique by ``job_id`` and ``n``)."""

    job_id: str
    n: int
    owner: str
    model: str
    provider: str
    day: str
    cost: int


@dataclass(frozen=True)
class Settlement:
    """Add ``delta`` to ``owner``'s running totals, in the period of ``day`` / ``month``
    (the reservation's, when the submit reserved one)."""

    owner: str
    delta: int
    day: str
    month: str


@dataclass(frozen=True)
class JobSpend:
    rows: tuple[UsageRow, ...]
    settlement: Settlement | None


def spend_of(job: Job, at: float | None = None) -> JobSpend | None:
    """What a job's end records (see the module docstring); None when nothing: no priced
    attempt and no reservation."""
    meta = _meta(job)
    charged = meta.get("charged")
    charged = charged if isinstance(charged, int) else 0
    now_day, now_month = day_and_month(at)
    rows = tuple(
        UsageRow(
            job.id,
            a.n,
            job.owner,
            job.model,
            a.provider,
            day_and_month(a.ended_at if a.ended_at is not None else at)[0],
            a.charge,
        )
        for a in job.attempts
        if a.priced
    )
    if not rows and not charged:
        return None
    actual = sum(r.cost for r in rows)
    day = str(meta.get("day") or now_day) if charged else now_day
    month = str(meta.get("month") or now_month) if charged else now_month
    settlement = Settlement(job.owner, actual - charged, day, month)
    return JobSpend(rows, settlement if (actual or charged) else None)


@dataclass(frozen=True)
class UsageBucket:
    """Usage of one owner, day, model and provider (the store's grouping)."""

    owner: str
    day: str
    model: str
    provider: str
    cost: int
    attempts: int
