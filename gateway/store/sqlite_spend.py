"""The spend methods of the SQLite store: budgets checked and reserved, the usage ledger.

A mixin of ``SQLiteJobStore``. Every write runs in its writer thread, one transaction at a
time (``BEGIN IMMEDIATE``), so a reservation's check and write are one atomic step: no other
submit comes in between, and nothing is lost at a restart (the totals are rows, not memory).
``record_spend`` is the part of ``finish`` and ``cancel`` that records a job's cost, in their
own transaction.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

from gateway.spend import Budgets, JobSpend, Settlement, Spent, UsageBucket
from gateway.store.base import JobStore

T = TypeVar("T")

_SELECT = "SELECT day, day_spent, month, month_spent, total_spent FROM key_spend WHERE owner = ?"
_UPSERT = """
    INSERT INTO key_spend (owner, day, day_spent, month, month_spent, total_spent)
    VALUES (?, ?, ?, ?, ?, ?)
    ON CONFLICT (owner) DO UPDATE SET day = excluded.day, day_spent = excluded.day_spent,
        month = excluded.month, month_spent = excluded.month_spent,
        total_spent = excluded.total_spent
"""
_INSERT_USAGE = (
    "INSERT INTO usage (job_id, n, owner, model, provider, day, cost) VALUES (?,?,?,?,?,?,?) "
    "ON CONFLICT (job_id, n) DO NOTHING"
)


def _totals(row: Any, day: str, month: str) -> Spent:
    """The row's totals as of ``day`` and ``month``: a past period counts 0; a later one
    (a clock behind another's) counts as this one."""
    if row is None:
        return Spent()
    return Spent(
        daily=row[1] if row[0] >= day else 0,
        monthly=row[3] if row[2] >= month else 0,
        total=row[4],
    )


def _write_totals(conn: sqlite3.Connection, owner: str, day: str, month: str, s: Spent) -> None:
    conn.execute(_UPSERT, (owner, day, s.daily, month, s.monthly, s.total))


def _apply(conn: sqlite3.Connection, settlement: Settlement) -> None:
    """Add the settlement's delta to the totals of its own period (if still current)."""
    row = conn.execute(_SELECT, (settlement.owner,)).fetchone()
    delta = settlement.delta
    if row is None:
        fresh = max(0, delta)
        _write_totals(
            conn, settlement.owner, settlement.day, settlement.month, Spent(fresh, fresh, fresh)
        )
        return
    day, month = max(row[0], settlement.day), max(row[2], settlement.month)

    def moved(row_period: str, spent: int, period: str) -> int:
        if row_period == period:
            return max(0, spent + delta)
        return max(0, delta) if row_period < period else spent

    _write_totals(
        conn,
        settlement.owner,
        day,
        month,
        Spent(
            moved(row[0], row[1], settlement.day),
            moved(row[2], row[3], settlement.month),
            max(0, row[4] + delta),
        ),
    )


def record_spend(conn: sqlite3.Connection, spend: JobSpend | None) -> None:
    """Write a job's usage rows and settle its owner's totals (inside the caller's write)."""
    if spend is None:
        return
    conn.executemany(
        _INSERT_USAGE,
        [(r.job_id, r.n, r.owner, r.model, r.provider, r.day, r.cost) for r in spend.rows],
    )
    if spend.settlement is not None:
        _apply(conn, spend.settlement)


class SQLiteSpend(JobStore):
    if TYPE_CHECKING:  # provided by SQLiteJobStore

        async def _write(self, fn: Callable[[sqlite3.Connection], T]) -> T: ...

        async def _read(self, sql: str, params: tuple[Any, ...] = ()) -> list[Any]: ...

    async def charge_budget(
        self, owner: str, amount: int, budgets: Budgets, day: str, month: str
    ) -> Spent | None:
        def op(conn: sqlite3.Connection) -> Spent | None:
            now = _totals(conn.execute(_SELECT, (owner,)).fetchone(), day, month)
            for spent, budget in (
                (now.daily, budgets.daily),
                (now.monthly, budgets.monthly),
                (now.total, budgets.total),
            ):
                if budget is not None and spent + amount > budget:
                    return now
            after = Spent(now.daily + amount, now.monthly + amount, now.total + amount)
            _write_totals(conn, owner, day, month, after)
            return None

        return await self._write(op)

    async def settle(self, settlement: Settlement) -> None:
        await self._write(lambda conn: _apply(conn, settlement))

    async def spent(self, owner: str, day: str, month: str) -> Spent:
        rows = await self._read(_SELECT, (owner,))
        return _totals(rows[0] if rows else None, day, month)

    async def usage(self, owner: str | None, start_day: str, end_day: str) -> list[UsageBucket]:
        mine = "" if owner is None else " AND owner = ?"
        rows = await self._read(
            "SELECT owner, day, model, provider, sum(cost), count(*) FROM usage "
            f"WHERE day >= ? AND day <= ?{mine} GROUP BY owner, day, model, provider "
            "ORDER BY day, owner, model, provider",
            (start_day, end_day) + (() if owner is None else (owner,)),
        )
        return [UsageBucket(*row) for row in rows]
