"""bench/auth_poll.py must not rot: a few polls on each database, figures that make sense.
This asserts that the harness works (and that polls with a stored key read no key row), not
any speed."""

from __future__ import annotations

import pytest

from bench.auth_poll import measure
from tests.postgres import URL, connect


async def test_polls_with_a_stored_key_on_sqlite_are_measured() -> None:
    figures = await measure(None, requests=20, rounds=2)
    assert figures["stored_us"] > 0 and figures["static_us"] > 0
    assert figures["find_key_per_poll"] == 0


async def test_polls_with_the_cache_off_read_the_key_every_time(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("BACKSERV_AUTH_CACHE_SECONDS", "0")
    figures = await measure(None, requests=20, rounds=2)
    assert figures["find_key_per_poll"] == 1


async def test_polls_with_a_stored_key_on_postgres_are_measured() -> None:
    await (await connect()).close()  # skips without a server
    figures = await measure(URL, requests=20, rounds=2)
    assert figures["stored_us"] > 0
    assert figures["find_key_per_poll"] == 0
