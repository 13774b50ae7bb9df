"""``backserv usage`` and ``backserv budget`` (gateway/commands/spend.py), against the database."""

from __future__ import annotations

import asyncio
import csv
import io
from pathlib import Path

import pytest

from gateway.jobs import Attempt, Outcome, Status
from gateway.spend import spend_of
from gateway.store.sqlite import SQLiteJobStore
from tests.store.test_contract import make_job
from tests.test_cli import cli_env, create_key, run  # noqa: F401 - cli_env: autouse fixture


async def _finished_job(db: Path, owner: str, cost: int) -> None:
    store = SQLiteJobStore(db)
    await store.open()
    try:
        await store.insert_job(make_job(owner=owner, model="flux-dev", lane="fal"))
        [job] = await store.claim("fal", 1, "w", 30.0)
        attempt = Attempt(1, "fal:fal-ai/flux/dev", 0, "fal", "r1", estimate=cost, cost=cost)
        attempt.close(Outcome.SUCCEEDED)
        job.attempts = [attempt]
        await store.finish(
            job.id, job.lease_token, Status.COMPLETED, attempts=job.attempts, spend=spend_of(job)
        )
    finally:
        await store.close()


def test_budgets_are_set_and_shown_with_what_was_spent(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _key, key_id = create_key(capsys)
    asyncio.run(_finished_job(tmp_path / "backserv.db", key_id, 1_250_000))

    code, out, err = run(capsys, "budget", "set", key_id, "--daily", "2.5", "--total", "none")

    assert code == 0, err
    lines = out.splitlines()
    assert lines[0].split() == ["daily", "budget", "2.5", "spent", "1.25", "USD"]
    assert lines[2].split() == ["total", "budget", "none", "spent", "1.25", "USD"]
    code, shown, _err = run(capsys, "budget", "show", key_id)
    assert code == 0 and shown == out


def test_a_bad_budget_is_refused_naming_the_option(capsys: pytest.CaptureFixture[str]) -> None:
    _key, key_id = create_key(capsys)

    code, _out, err = run(capsys, "budget", "set", key_id, "--monthly", "-3")

    assert code == 1 and "budget_monthly" in err


def test_usage_prints_every_keys_spend_as_a_table_or_csv(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    db = tmp_path / "backserv.db"
    asyncio.run(_finished_job(db, "key_a", 400_000))
    asyncio.run(_finished_job(db, "key_b", 100_000))

    code, table, _err = run(capsys, "usage", "--group-by", "model")
    assert code == 0
    assert table.splitlines()[0].split() == ["model", "cost", "(USD)", "attempts"]
    assert ["flux-dev", "0.500000", "2"] in [line.split() for line in table.splitlines()]
    code, out, _err = run(capsys, "usage", "--key", "key_b", "--group-by", "provider", "--csv")

    rows = list(csv.reader(io.StringIO(out)))
    assert rows == [["provider", "cost", "currency", "attempts"], ["fal", "0.100000", "USD", "1"]]
