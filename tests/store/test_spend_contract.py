"""The JobStore contract for spend: budgets reserved atomically, settled at a job's end, and
the usage ledger.

Like ``test_contract.py``: functions of a ``store`` fixture, not collected on their own;
``test_sqlite.py`` and ``test_postgres.py`` star-import them.
"""

from __future__ import annotations

import asyncio
import dataclasses

from gateway.jobs import Attempt, Outcome, Status
from gateway.spend import Budgets, Spent, spend_of
from gateway.store.base import JobStore
from tests.store.test_contract import BASE_TIME, claim_one, insert, make_key

__test__ = False  # collected through the backend modules that provide ``store``

DAY, MONTH = "2025-03-14", "2025-03"


async def test_a_budget_is_reserved_until_the_next_charge_would_cross_it(
    store: JobStore,
) -> None:
    budgets = Budgets(total=1_000)

    assert await store.charge_budget("alice", 400, budgets, DAY, MONTH) is None
    assert await store.charge_budget("alice", 600, budgets, DAY, MONTH) is None
    refused = await store.charge_budget("alice", 1, budgets, DAY, MONTH)

    assert refused == Spent(daily=1_000, monthly=1_000, total=1_000)
    assert await store.spent("alice", DAY, MONTH) == Spent(1_000, 1_000, 1_000)
    assert await store.spent("bob", DAY, MONTH) == Spent()


async def test_one_charge_larger_than_the_budget_is_refused_for_a_new_key(
    store: JobStore,
) -> None:
    refused = await store.charge_budget("alice", 2_000, Budgets(daily=1_000), DAY, MONTH)

    assert refused == Spent()
    assert await store.spent("alice", DAY, MONTH) == Spent()


async def test_racing_charges_never_reserve_past_the_budget(store: JobStore) -> None:
    budgets = Budgets(monthly=1_000)

    results = await asyncio.gather(
        *(store.charge_budget("alice", 30, budgets, DAY, MONTH) for _ in range(60))
    )

    granted = sum(r is None for r in results)
    assert granted == 33  # 33 * 30 = 990; a 34th would make 1020
    assert (await store.spent("alice", DAY, MONTH)).monthly == 990


async def test_a_daily_budget_starts_again_the_next_day_and_a_total_does_not(
    store: JobStore,
) -> None:
    budgets = Budgets(daily=500, total=800)
    assert await store.charge_budget("alice", 500, budgets, DAY, MONTH) is None
    assert await store.charge_budget("alice", 1, budgets, DAY, MONTH) is not None

    assert await store.charge_budget("alice", 300, budgets, "2025-03-15", MONTH) is None
    refused = await store.charge_budget("alice", 1, budgets, "2025-03-16", MONTH)

    assert refused == Spent(daily=0, monthly=800, total=800)  # the total stopped it


async def test_a_finished_job_records_its_attempts_and_settles_its_reservation(
    store: JobStore,
) -> None:
    assert await store.charge_budget("alice", 300, Budgets(total=1_000), DAY, MONTH) is None
    spend = {"estimate": 300, "currency": "USD", "charged": 300, "day": DAY, "month": MONTH}
    await insert(store, meta={"spend": spend})
    job = await claim_one(store)
    at = BASE_TIME
    failed = Attempt(1, "fal:x", 0, "fal", "r1", started_at=at, estimate=300, cost=40)
    failed.close(Outcome.FAILED, {"code": "provider_unavailable", "message": "no"}, at + 1)
    won = Attempt(2, "replicate:y", 1, "replicate", "r2", started_at=at, estimate=250, cost=250)
    won.close(Outcome.SUCCEEDED, None, at + 2)
    job.attempts = [failed, won]

    await store.finish(
        job.id, job.lease_token, Status.COMPLETED, attempts=job.attempts, spend=spend_of(job)
    )

    # 290 spent of 300 reserved: 10 handed back, in the period the reservation was made
    assert await store.spent("alice", DAY, MONTH) == Spent(290, 290, 290)
    day = "2023-11-14"  # the attempts' own day (BASE_TIME)
    rows = await store.usage("alice", day, day)
    assert [(r.model, r.provider, r.cost, r.attempts) for r in rows] == [
        ("sandbox-image", "fal", 40, 1),
        ("sandbox-image", "replicate", 250, 1),
    ]
    assert await store.usage("bob", day, day) == []
    assert len(await store.usage(None, day, day)) == 2


async def test_a_cancelled_queued_job_hands_its_reservation_back(store: JobStore) -> None:
    assert await store.charge_budget("alice", 300, Budgets(total=300), DAY, MONTH) is None
    spend = {"estimate": 300, "currency": "USD", "charged": 300, "day": DAY, "month": MONTH}
    job = await insert(store, meta={"spend": spend})

    assert await store.cancel(job.id) is not None

    assert await store.spent("alice", DAY, MONTH) == Spent()
    assert await store.charge_budget("alice", 300, Budgets(total=300), DAY, MONTH) is None


async def test_a_key_reads_back_with_its_budgets(store: JobStore) -> None:
    record = dataclasses.replace(make_key(1, BASE_TIME), budget_daily=5, budget_total=9)
    await store.create_key(record)

    found = await store.get_key("key_1")
    assert found == record and found.budgets == Budgets(daily=5, total=9)
    assert found.limits.budgets == Budgets(daily=5, total=9)
    updated = await store.update_key("key_1", {"budget_daily": None, "budget_monthly": 7})
    assert updated is not None and updated.budgets == Budgets(monthly=7, total=9)
