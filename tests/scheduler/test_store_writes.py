"""How many store writes one job costs the runner, on SQLite and PostgreSQL.

The attempt must be durable before the submit and the provider's reference right after it;
everything else (progress, the attempt's end, the result) waits for the next of those writes
or for the finish. A wrapper counts the store's write calls while the runner runs one job.
"""

from __future__ import annotations

import secrets
from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from asyncpg.utils import _quote_ident as quote_ident

from gateway.jobs import Status
from gateway.scheduler.runner import JobRunner
from gateway.storage import LocalStorage, OutputSource
from gateway.store.base import JobStore
from gateway.store.postgres import PostgresJobStore
from gateway.store.sqlite import SQLiteJobStore
from providers.base import Provider
from tests.fakes import FakeProvider, succeed
from tests.postgres import URL, connect
from tests.scheduler.test_runner import POLICY, claimed, final

WRITES = frozenset(
    {"save_attempts", "save_progress", "finish", "release", "claim", "heartbeat", "cancel"}
)


class CountingStore:
    """Passes every call to ``inner``; counts the calls that write."""

    def __init__(self, inner: JobStore) -> None:
        self.inner = inner
        self.writes: Counter[str] = Counter()

    def __getattr__(self, name: str) -> Any:
        found = getattr(self.inner, name)
        if name not in WRITES:
            return found

        async def counted(*args: Any, **kwargs: Any) -> Any:
            self.writes[name] += 1
            return await found(*args, **kwargs)

        return counted


@pytest.fixture(params=["sqlite", "postgres"])
async def any_store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[JobStore]:
    if request.param == "sqlite":
        lite = SQLiteJobStore(tmp_path / "jobs.db")
        await lite.open()
        try:
            yield lite
        finally:
            await lite.close()
        return
    admin = await connect()
    schema = f"backserv_writes_{secrets.token_hex(6)}"
    pg = PostgresJobStore(URL, schema=schema, min_connections=1)
    try:
        await pg.open()
        yield pg
    finally:
        await pg.close()
        await admin.execute(f"DROP SCHEMA IF EXISTS {quote_ident(schema)} CASCADE")
        await admin.close()


async def test_a_polled_job_costs_three_writes_attempt_reference_and_finish(
    any_store: JobStore, tmp_path: Path
) -> None:
    fake = FakeProvider("fake")
    fake.scripts = [succeed(after=3)]  # queued and running reads, then the end
    job, model = await claimed(any_store)  # type: ignore[arg-type]
    counting = CountingStore(any_store)
    providers: dict[str, Provider] = {"fake": fake}
    storage = LocalStorage(tmp_path / "files", OutputSource(max_bytes=1_000_000))
    runner = JobRunner(counting, providers, storage, POLICY, job_timeout=30.0)  # type: ignore[arg-type]

    await runner.run(job, model)

    done = await final(any_store, job.id)  # type: ignore[arg-type]
    assert done.status is Status.COMPLETED and done.progress == 100
    [attempt] = done.attempts
    assert attempt.request_id == fake.submits[0].request_id and attempt.outcome == "succeeded"
    # before the submit, right after it, and the finish (progress rides on the finish)
    assert counting.writes == {"save_attempts": 2, "finish": 1}, counting.writes
