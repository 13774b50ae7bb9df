"""PostgreSQL's shared rate-limit buckets (``take_rate_token``, gateway/store/postgres_keys.py).

Functions of the ``pg_store`` and ``replicas`` fixtures of ``test_postgres.py``, which
star-imports them (not collected on their own).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import pytest

from gateway.store.postgres import PostgresJobStore

__test__ = False  # collected through test_postgres.py, which provides the fixtures

SLOW = 0.001  # tokens per second: nothing refills during a test


async def test_a_bucket_grants_its_burst_then_says_when_the_next_token_comes(
    pg_store: PostgresJobStore,
) -> None:
    waits = [await pg_store.take_rate_token("k", 0.5, 3) for _ in range(4)]
    assert waits[:3] == [0.0, 0.0, 0.0]
    assert 1.9 < waits[3] <= 2.0  # one token per 2 s, and it was just spent


async def test_replicas_share_one_bucket_exactly(
    replicas: Callable[[], PostgresJobStore],
) -> None:
    a, b = replicas(), replicas()
    await asyncio.gather(a.open(), b.open())

    waits = await asyncio.gather(
        *(s.take_rate_token("k", SLOW, 10) for _ in range(25) for s in (a, b))
    )

    assert sum(1 for w in waits if w == 0.0) == 10  # not 10 per replica
    assert all(w > 900 for w in waits if w > 0)


async def test_tokens_come_back_at_the_rate_by_the_databases_clock(
    pg_store: PostgresJobStore,
) -> None:
    assert await pg_store.take_rate_token("k", 20.0, 1) == 0.0
    wait = await pg_store.take_rate_token("k", 20.0, 1)
    assert 0 < wait <= 0.05
    await asyncio.sleep(0.06)
    assert await pg_store.take_rate_token("k", 20.0, 1) == 0.0


async def test_refused_takes_do_not_push_the_next_token_back(pg_store: PostgresJobStore) -> None:
    assert await pg_store.take_rate_token("k", 10.0, 1) == 0.0
    first = await pg_store.take_rate_token("k", 10.0, 1)
    for _ in range(5):
        later = await pg_store.take_rate_token("k", 10.0, 1)
        assert later <= first  # the wait shrinks as time passes; refusals cost nothing
    await asyncio.sleep(0.11)
    assert await pg_store.take_rate_token("k", 10.0, 1) == 0.0


async def test_buckets_are_per_key_and_a_smaller_burst_applies_at_once(
    pg_store: PostgresJobStore,
) -> None:
    assert await pg_store.take_rate_token("a", SLOW, 10) == 0.0  # 9 left
    granted = [await pg_store.take_rate_token("a", SLOW, 2) for _ in range(3)]
    assert granted[:2] == [0.0, 0.0] and granted[2] > 0  # capped at the new burst of 2
    assert await pg_store.take_rate_token("b", SLOW, 1) == 0.0  # another key, its own bucket


@pytest.mark.parametrize("burst", [1, 5])
async def test_a_bucket_starts_full(pg_store: PostgresJobStore, burst: int) -> None:
    waits = [await pg_store.take_rate_token(f"fresh-{burst}", SLOW, burst) for _ in range(burst)]
    assert waits == [0.0] * burst
