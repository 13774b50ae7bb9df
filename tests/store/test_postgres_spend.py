"""Budgets across PostgreSQL replicas: one atomic reservation per submit, whichever replica
takes it, and totals that outlive the process (a restart). Skips without PostgreSQL, as
``test_postgres.py`` does."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from gateway.spend import Budgets, Spent
from gateway.store.postgres import PostgresJobStore
from tests.store.test_postgres import admin, replicas, schema  # noqa: F401 - fixtures

DAY, MONTH = "2025-03-14", "2025-03"


async def test_two_replicas_racing_for_the_last_of_a_budget_never_cross_it(
    replicas: Callable[[], PostgresJobStore],  # noqa: F811
) -> None:
    a, b = replicas(), replicas()
    await asyncio.gather(a.open(), b.open())
    budgets = Budgets(total=1_000)

    results = await asyncio.gather(
        *((a if i % 2 else b).charge_budget("alice", 70, budgets, DAY, MONTH) for i in range(40))
    )

    assert sum(r is None for r in results) == 14  # 14 * 70 = 980; a 15th would make 1050
    assert await a.spent("alice", DAY, MONTH) == await b.spent("alice", DAY, MONTH)
    assert (await b.spent("alice", DAY, MONTH)).total == 980


async def test_the_totals_hold_after_a_restart(
    replicas: Callable[[], PostgresJobStore],  # noqa: F811
) -> None:
    first = replicas()
    await first.open()
    assert await first.charge_budget("alice", 900, Budgets(daily=1_000), DAY, MONTH) is None
    await first.close()

    again = replicas()
    await again.open()

    refused = await again.charge_budget("alice", 200, Budgets(daily=1_000), DAY, MONTH)
    assert refused == Spent(900, 900, 900)
