"""The key ring's cache of stored keys (gateway/auth_cache.py), alone and in the app on SQLite.

The PostgreSQL side (NOTIFY, two replicas, the listener down) is in
tests/test_auth_cache_postgres.py.
"""

from __future__ import annotations

import asyncio
import sqlite3
import time
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from gateway.app import Gateway
from gateway.auth import new_key_record
from gateway.auth_cache import KnownKeys
from gateway.store.base import ApiKeyRecord, JobStore
from gateway.store.sqlite import SQLiteJobStore
from tests.api.support import assert_error, running, submit_image
from tests.conftest import make_settings

# -- KnownKeys alone ------------------------------------------------------------------------


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_an_entry_is_used_within_the_epoch_it_was_read_in() -> None:
    known: KnownKeys[str] = KnownKeys(60)
    assert known.get("h1", 7) is None
    assert known.put("h1", "key_1", "principal", 7)
    assert known.get("h1", 7) == "principal"


def test_a_new_epoch_forgets_everything_read_before_it() -> None:
    known: KnownKeys[str] = KnownKeys(60)
    known.get("h1", 7)
    known.put("h1", "key_1", "principal", 7)
    assert known.get("h1", 8) is None
    assert len(known) == 0
    assert known.get("h1", 7) is None  # going back does not bring it back


def test_a_key_read_before_the_epoch_moved_is_not_kept() -> None:
    """A request read the epoch (7), then the key; meanwhile another request saw epoch 8."""
    known: KnownKeys[str] = KnownKeys(60)
    known.get("h1", 7)
    known.get("h2", 8)
    assert not known.put("h1", "key_1", "stale principal", 7)
    assert known.get("h1", 8) is None


def test_nothing_is_used_or_kept_while_the_epoch_is_unknown() -> None:
    known: KnownKeys[str] = KnownKeys(60)
    known.get("h1", 7)
    known.put("h1", "key_1", "principal", 7)
    assert known.get("h1", None) is None
    assert len(known) == 0
    assert not known.put("h1", "key_1", "principal", None)
    assert len(known) == 0


def test_dropping_a_key_forgets_its_entries_only() -> None:
    known: KnownKeys[str] = KnownKeys(60)
    known.get("h1", 1)
    known.put("h1", "key_1", "one", 1)
    known.put("h2", "key_2", "two", 1)
    known.drop("key_1")
    assert known.get("h1", 1) is None
    assert known.get("h2", 1) == "two"


def test_an_entry_expires_after_its_ttl() -> None:
    clock = Clock()
    known: KnownKeys[str] = KnownKeys(30, clock=clock)
    known.get("h1", 1)
    known.put("h1", "key_1", "principal", 1)
    clock.now += 29.9
    assert known.get("h1", 1) == "principal"
    clock.now += 0.2
    assert known.get("h1", 1) is None


def test_the_least_recently_used_entry_goes_first_beyond_the_size() -> None:
    known: KnownKeys[str] = KnownKeys(60, size=2)
    known.get("h1", 1)
    known.put("h1", "key_1", "one", 1)
    known.put("h2", "key_2", "two", 1)
    assert known.get("h1", 1) == "one"  # h2 is now the least recently used
    known.put("h3", "key_3", "three", 1)
    assert known.get("h2", 1) is None
    assert known.get("h1", 1) == "one"
    assert known.get("h3", 1) == "three"


def test_a_ttl_of_zero_keeps_nothing() -> None:
    known: KnownKeys[str] = KnownKeys(0)
    assert not known.enabled
    known.get("h1", 1)
    assert not known.put("h1", "key_1", "principal", 1)


# -- in the app, on SQLite --------------------------------------------------------------------


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


class Lookups:
    """Counts the store's reads of a key row (``find_key``)."""

    def __init__(self, store: JobStore, monkeypatch: pytest.MonkeyPatch) -> None:
        self.count = 0
        find_key = store.find_key

        async def counted(key_hash: str) -> ApiKeyRecord | None:
            self.count += 1
            return await find_key(key_hash)

        monkeypatch.setattr(store, "find_key", counted)


Api = tuple[httpx.AsyncClient, Gateway, dict[str, str]]


@pytest.fixture
async def api(tmp_path: Path) -> AsyncIterator[Api]:
    """A client, the gateway (auth cache on, jobs stay QUEUED), a stored admin key's headers."""
    settings = make_settings(tmp_path, rate_limit_per_second=0, auth_cache_seconds=60)
    async with running(settings, start_scheduler=False) as (client, gw):
        key, record = new_key_record("ops", scopes="admin")
        await gw.store.create_key(record)
        yield client, gw, bearer(key)


async def stored_key(gw: Gateway) -> tuple[dict[str, str], ApiKeyRecord]:
    key, record = new_key_record("user")
    await gw.store.create_key(record)
    return bearer(key), record


async def test_a_stored_key_poll_does_not_read_the_key_row(
    api: Api, monkeypatch: pytest.MonkeyPatch
) -> None:
    client, gw, _admin = api
    user, _record = await stored_key(gw)
    job = await submit_image(client, headers=user)
    lookups = Lookups(gw.store, monkeypatch)
    for _ in range(5):
        resp = await client.get(f"/v1/jobs/{job['id']}", headers=user)
        assert resp.status_code == 200, resp.text
    assert lookups.count == 0


async def test_with_the_cache_off_every_request_reads_the_key(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = make_settings(tmp_path, auth_cache_seconds=0)
    async with running(settings, start_scheduler=False) as (client, gw):
        user, _record = await stored_key(gw)
        job = await submit_image(client, headers=user)
        lookups = Lookups(gw.store, monkeypatch)
        for _ in range(3):
            assert (await client.get(f"/v1/jobs/{job['id']}", headers=user)).status_code == 200
        assert lookups.count == 3


async def test_a_key_revoked_over_the_api_is_refused_at_the_very_next_request(api: Api) -> None:
    client, gw, admin = api
    user, record = await stored_key(gw)
    job = await submit_image(client, headers=user)
    assert (await client.get(f"/v1/jobs/{job['id']}", headers=user)).status_code == 200

    resp = await client.delete(f"/v1/keys/{record.id}", headers=admin)
    assert resp.status_code == 200, resp.text
    resp = await client.get(f"/v1/jobs/{job['id']}", headers=user)
    assert_error(resp, 401, error_type="authentication_error")


async def test_a_key_revoked_by_another_process_is_refused_at_the_next_request(
    api: Api, tmp_path: Path
) -> None:
    """``backserv keys revoke`` opens a store of its own on the same file; this process
    hears nothing of it but the key epoch the database's trigger moved."""
    client, gw, _admin = api
    user, record = await stored_key(gw)
    job = await submit_image(client, headers=user)
    assert (await client.get(f"/v1/jobs/{job['id']}", headers=user)).status_code == 200

    cli = SQLiteJobStore(tmp_path / "backserv.db")
    await cli.open()
    try:
        assert await cli.revoke_key(record.id, time.time())
    finally:
        await cli.close()
    resp = await client.get(f"/v1/jobs/{job['id']}", headers=user)
    assert_error(resp, 401, error_type="authentication_error")


async def test_new_limits_apply_at_the_very_next_request(api: Api) -> None:
    client, gw, admin = api
    user, record = await stored_key(gw)
    await submit_image(client, headers=user)  # one active job (nothing runs it)

    resp = await client.patch(f"/v1/keys/{record.id}", json={"max_active_jobs": 1}, headers=admin)
    assert resp.status_code == 200, resp.text
    resp = await client.post(
        "/v1/jobs/images", json={"model": "sandbox-image", "prompt": "x"}, headers=user
    )
    assert_error(resp, 429, code="too_many_active_jobs")


async def test_a_scope_changed_in_the_database_by_hand_applies_at_the_next_request(
    api: Api, tmp_path: Path
) -> None:
    """An operator's sqlite3 shell: no gateway code runs, the trigger moves the epoch."""
    client, gw, _admin = api
    key, record = new_key_record("second admin", scopes="admin")
    await gw.store.create_key(record)
    assert (await client.get("/v1/keys", headers=bearer(key))).status_code == 200

    def demote() -> None:
        conn = sqlite3.connect(tmp_path / "backserv.db", isolation_level=None)
        try:
            conn.execute("UPDATE api_keys SET scopes = '' WHERE id = ?", (record.id,))
        finally:
            conn.close()

    await asyncio.to_thread(demote)
    assert_error(await client.get("/v1/keys", headers=bearer(key)), 403)
