"""Reading a gateway's database directly, so that waiting for jobs costs the gateway no HTTP.

SQLite is opened read-only (WAL readers do not block the gateway's writer); PostgreSQL
through one asyncpg connection of its own.
"""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

from bench.servers import TERMINAL, BenchError

Counts = dict[str, int]
Counter = Callable[[], Awaitable[Counts]]
COUNT_SQL = "SELECT status, count(*) FROM jobs GROUP BY status"


def sqlite_path(database_url: str) -> str:
    return database_url[len("sqlite:///") :]


def _sqlite_query(path: str, sql: str) -> list[Any]:
    uri = f"file:{path}?mode=ro"
    with contextlib.closing(sqlite3.connect(uri, uri=True, timeout=5)) as conn:
        return conn.execute(sql).fetchall()


@contextlib.asynccontextmanager
async def job_counter(database_url: str) -> AsyncIterator[Counter]:
    """An async callable answering ``{status: count}`` of every job in the database."""
    if database_url.startswith("sqlite:///"):
        path = sqlite_path(database_url)

        async def count_sqlite() -> Counts:
            rows = await asyncio.to_thread(_sqlite_query, path, COUNT_SQL)
            return {str(status): int(n) for status, n in rows}

        yield count_sqlite
        return
    import asyncpg

    conn = await asyncpg.connect(database_url, timeout=10)
    try:

        async def count_pg() -> Counts:
            rows = await conn.fetch(COUNT_SQL)
            return {str(r[0]): int(r[1]) for r in rows}

        yield count_pg
    finally:
        await conn.close()


def unfinished(counts: Counts) -> int:
    return sum(n for s, n in counts.items() if s not in TERMINAL)


async def until_finished(
    count: Counter,
    timeout: float,
    what: str,
    every: float = 0.02,
    on_sample: Callable[[Counts], None] | None = None,
) -> Counts:
    """Wait until no job is QUEUED or PROCESSING; the final counts."""
    deadline = time.monotonic() + timeout
    while True:
        counts = await count()
        if on_sample is not None:
            on_sample(counts)
        if not unfinished(counts):
            return counts
        if time.monotonic() > deadline:
            raise BenchError(f"{what}: not finished in {timeout:g} s: {counts}")
        await asyncio.sleep(every)


def sqlite_job_times(database_url: str) -> dict[str, tuple[float, float | None]]:
    """Each job's ``created_at`` and the ``started_at`` of its first attempt (when the runner
    opened it, just before the provider submit), from the jobs' own records."""
    import json

    rows = _sqlite_query(sqlite_path(database_url), "SELECT id, created_at, attempts FROM jobs")
    times: dict[str, tuple[float, float | None]] = {}
    for job_id, created, attempts in rows:
        log = json.loads(attempts or "[]")
        started = log[0].get("started_at") if log else None
        times[str(job_id)] = (float(created), None if started is None else float(started))
    return times


def sqlite_run_health(database_url: str) -> tuple[int, dict[str, int]]:
    """How many jobs were claimed more than once (a lease that ran out, so the job was
    handed back and claimed again), and the failed attempts by error code."""
    path = sqlite_path(database_url)
    [(reclaimed,)] = _sqlite_query(path, "SELECT count(*) FROM jobs WHERE lease_token > 1")
    rows = _sqlite_query(
        path,
        "SELECT json_extract(a.value, '$.error.code'), count(*) FROM jobs, "
        "json_each(jobs.attempts) AS a WHERE json_extract(a.value, '$.outcome') = 'failed' "
        "GROUP BY 1",
    )
    return int(reclaimed or 0), {str(code): int(n) for code, n in rows}


def health_text(reclaimed: int, failed: dict[str, int]) -> str:
    """The run's health as one sentence for RESULTS.md ("" when all was well)."""
    parts = []
    if reclaimed:
        parts.append(
            f"{reclaimed:,} jobs were claimed again after their lease ran out (a blocked loop "
            "cannot renew leases)"
        )
    if failed:
        listed = ", ".join(f"{n:,} `{code}`" for code, n in sorted(failed.items()))
        parts.append(f"provider attempts failed: {listed}")
    return ("; ".join(parts) + ".") if parts else ""
