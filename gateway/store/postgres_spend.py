"""The spend methods of the PostgreSQL store: budgets checked and reserved, the usage ledger.

A mixin of ``PostgresJobStore``. A reservation (``charge_budget``) is one statement, as the
rate limiter's take is: an ``INSERT ... ON CONFLICT DO UPDATE ... WHERE`` on the key's row of
``key_spend``. The row lock serialises the replicas; each statement re-reads the row that the
one before it committed, and writes only if every budget still holds after adding the
amount, so no two submits on any replicas both spend the last of a budget. A period that has
passed counts 0 (the UTC day and month come from the submitting replica's clock; a row
already in a later period, from a clock ahead of ours, counts as ours: it errs on refusing).
``record_spend`` is the part of ``finish`` and ``cancel`` that records a job's cost, in
their own transaction.
"""

from __future__ import annotations

from abc import abstractmethod
from typing import Any

from gateway.spend import Budgets, JobSpend, Settlement, Spent, UsageBucket
from gateway.store.base import JobStore

_DAY = "CASE WHEN s.day >= excluded.day THEN s.day_spent ELSE 0 END"
_MONTH = "CASE WHEN s.month >= excluded.month THEN s.month_spent ELSE 0 END"
# $1 owner, $2 amount, $3 day, $4 month, $5 daily, $6 monthly, $7 total (budgets: NULL = none)
CHARGE = f"""
    INSERT INTO key_spend AS s (owner, day, day_spent, month, month_spent, total_spent)
    SELECT $1, $3, $2, $4, $2, $2
    WHERE ($5::bigint IS NULL OR $2::bigint <= $5) AND ($6::bigint IS NULL OR $2 <= $6)
        AND ($7::bigint IS NULL OR $2 <= $7)
    ON CONFLICT (owner) DO UPDATE SET
        day_spent = {_DAY} + $2, month_spent = {_MONTH} + $2, total_spent = s.total_spent + $2,
        day = GREATEST(s.day, excluded.day), month = GREATEST(s.month, excluded.month)
    WHERE ($5::bigint IS NULL OR {_DAY} + $2 <= $5)
        AND ($6::bigint IS NULL OR {_MONTH} + $2 <= $6)
        AND ($7::bigint IS NULL OR s.total_spent + $2 <= $7)
    RETURNING 1
"""
SELECT_SPENT = (
    "SELECT day, day_spent, month, month_spent, total_spent FROM key_spend WHERE owner = $1"
)


def _moved(period: str, spent: str) -> str:
    """A total after adding $2 for the settlement's period: the same period moves by $2; a
    row still in an earlier period starts again from $2; a later one is left alone."""
    return (
        f"CASE WHEN s.{period} = excluded.{period} THEN GREATEST(0, s.{spent} + $2) "
        f"WHEN s.{period} < excluded.{period} THEN GREATEST(0, $2) ELSE s.{spent} END"
    )


# $1 owner, $2 delta (may be negative), $3 day, $4 month
SETTLE = f"""
    INSERT INTO key_spend AS s (owner, day, day_spent, month, month_spent, total_spent)
    VALUES ($1, $3, GREATEST(0, $2), $4, GREATEST(0, $2), GREATEST(0, $2))
    ON CONFLICT (owner) DO UPDATE SET
        day_spent = {_moved("day", "day_spent")},
        month_spent = {_moved("month", "month_spent")},
        total_spent = GREATEST(0, s.total_spent + $2),
        day = GREATEST(s.day, excluded.day), month = GREATEST(s.month, excluded.month)
"""
INSERT_USAGE = (
    "INSERT INTO usage (job_id, n, owner, model, provider, day, cost) "
    "VALUES ($1,$2,$3,$4,$5,$6,$7) ON CONFLICT (job_id, n) DO NOTHING"
)
_USAGE = (
    "SELECT owner, day, model, provider, sum(cost)::bigint, count(*) FROM usage "
    "WHERE day >= $1 AND day <= $2{mine} GROUP BY owner, day, model, provider "
    "ORDER BY day, owner, model, provider"
)


def totals(row: Any, day: str, month: str) -> Spent:
    if row is None:
        return Spent()
    return Spent(
        daily=int(row[1]) if row[0] >= day else 0,
        monthly=int(row[3]) if row[2] >= month else 0,
        total=int(row[4]),
    )


async def record_spend(conn: Any, spend: JobSpend | None) -> None:
    """Write a job's usage rows and settle its owner's totals (in the caller's transaction)."""
    if spend is None:
        return
    if spend.rows:
        await conn.executemany(
            INSERT_USAGE,
            [(r.job_id, r.n, r.owner, r.model, r.provider, r.day, r.cost) for r in spend.rows],
        )
    if spend.settlement is not None:
        s = spend.settlement
        await conn.execute(SETTLE, s.owner, s.delta, s.day, s.month)


class PostgresSpend(JobStore):
    @property
    @abstractmethod
    def pool(self) -> Any:
        """The asyncpg pool (PostgresJobStore's)."""

    async def charge_budget(
        self, owner: str, amount: int, budgets: Budgets, day: str, month: str
    ) -> Spent | None:
        row = await self.pool.fetchrow(
            CHARGE, owner, amount, day, month, budgets.daily, budgets.monthly, budgets.total
        )
        if row is not None:
            return None
        return totals(await self.pool.fetchrow(SELECT_SPENT, owner), day, month)

    async def settle(self, settlement: Settlement) -> None:
        s = settlement
        await self.pool.execute(SETTLE, s.owner, s.delta, s.day, s.month)

    async def spent(self, owner: str, day: str, month: str) -> Spent:
        return totals(await self.pool.fetchrow(SELECT_SPENT, owner), day, month)

    async def usage(self, owner: str | None, start_day: str, end_day: str) -> list[UsageBucket]:
        if owner is None:
            rows = await self.pool.fetch(_USAGE.format(mine=""), start_day, end_day)
        else:
            rows = await self.pool.fetch(
                _USAGE.format(mine=" AND owner = $3"), start_day, end_day, owner
            )
        return [UsageBucket(r[0], r[1], r[2], r[3], int(r[4]), int(r[5])) for r in rows]
