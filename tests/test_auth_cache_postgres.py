"""The key ring's cache on PostgreSQL: two gateway apps ("replicas") over one schema.

Needs ``BACKSERV_TEST_POSTGRES_URL`` (tests/postgres.py); skips without a server, except in CI.
A change of a key made on one replica reaches the other by a NOTIFY: these tests wait for
that notification to arrive (``heard``), then expect the other replica's next request to
see the change. While a replica's listener is down it keeps nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette

from gateway.app import Gateway, create_app
from gateway.auth import new_key_record
from gateway.store.postgres import PostgresJobStore
from gateway.store.postgres_schema import quote_ident
from tests.api.support import assert_error, submit_image
from tests.conftest import make_settings
from tests.postgres import URL, connect
from tests.test_auth_cache import Lookups, bearer

UNREACHABLE = "postgresql://postgres@127.0.0.1:1/none"  # refused at once: nothing listens


class Replica:
    def __init__(self, app: Starlette, client: httpx.AsyncClient) -> None:
        self.app = app
        self.client = client
        self.gw: Gateway = app.state.gateway
        self.store: PostgresJobStore = app.state.gateway.store
        self.changes: list[str] = []  # key ids heard of, in order
        self.store.watch_keys(self.changes.append)

    async def heard(self, key_id: str) -> None:
        """Wait until this replica's store heard that ``key_id`` changed."""
        await until(lambda: key_id in self.changes)

    async def live(self) -> None:
        """Wait until the listener is up (the key epoch is known)."""
        await until(lambda: self.store._keys_live, timeout=20.0)


async def until(condition: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("the condition did not hold in time")
        await asyncio.sleep(0.01)


@pytest.fixture
async def schema() -> AsyncIterator[str]:
    admin = await connect()
    name = f"backserv_test_{secrets.token_hex(6)}"
    try:
        yield name
    finally:
        await admin.execute(f"DROP SCHEMA IF EXISTS {quote_ident(name)} CASCADE")
        await admin.close()


@pytest.fixture
async def replicas(tmp_path: Path, schema: str) -> AsyncIterator[Callable[[], Any]]:
    """``await make()``: one more gateway app on the schema, listener up; all shut down after."""
    stack = contextlib.AsyncExitStack()

    async def make() -> Replica:
        settings = make_settings(
            tmp_path / secrets.token_hex(4),
            database_url=URL,
            rate_limit_per_second=0,
            auth_cache_seconds=60,
        )
        store = PostgresJobStore(URL, schema=schema, min_connections=1)
        app = create_app(settings, store=store, start_scheduler=False)
        await stack.enter_async_context(app.router.lifespan_context(app))
        client = await stack.enter_async_context(
            httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://testserver")
        )
        replica = Replica(app, client)
        await replica.live()
        return replica

    async with stack:
        yield make


async def admin_and_user(replica: Replica) -> tuple[dict[str, str], dict[str, str], str]:
    admin_key, admin = new_key_record("ops", scopes="admin")
    user_key, user = new_key_record("user")
    await replica.store.create_key(admin)
    await replica.store.create_key(user)
    return bearer(admin_key), bearer(user_key), user.id


async def test_a_key_revoked_over_the_api_is_refused_at_the_very_next_request(
    replicas: Callable[[], Any],
) -> None:
    a: Replica = await replicas()
    admin, user, user_id = await admin_and_user(a)
    job = await submit_image(a.client, headers=user)
    assert (await a.client.get(f"/v1/jobs/{job['id']}", headers=user)).status_code == 200

    resp = await a.client.delete(f"/v1/keys/{user_id}", headers=admin)
    assert resp.status_code == 200, resp.text
    assert_error(await a.client.get(f"/v1/jobs/{job['id']}", headers=user), 401)


async def test_a_stored_key_poll_does_not_read_the_key_row(
    replicas: Callable[[], Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    a: Replica = await replicas()
    _admin, user, _user_id = await admin_and_user(a)
    job = await submit_image(a.client, headers=user)
    lookups = Lookups(a.store, monkeypatch)
    for _ in range(5):
        assert (await a.client.get(f"/v1/jobs/{job['id']}", headers=user)).status_code == 200
    assert lookups.count == 0


async def test_a_key_revoked_on_one_replica_is_refused_by_the_other(
    replicas: Callable[[], Any],
) -> None:
    a: Replica = await replicas()
    b: Replica = await replicas()
    admin, user, user_id = await admin_and_user(a)
    job = await submit_image(a.client, headers=user)
    for _ in range(2):  # A now holds the key
        assert (await a.client.get(f"/v1/jobs/{job['id']}", headers=user)).status_code == 200

    resp = await b.client.delete(f"/v1/keys/{user_id}", headers=admin)
    assert resp.status_code == 200, resp.text
    await a.heard(user_id)
    assert_error(await a.client.get(f"/v1/jobs/{job['id']}", headers=user), 401)


async def test_new_limits_set_on_one_replica_apply_on_the_other(
    replicas: Callable[[], Any],
) -> None:
    a: Replica = await replicas()
    b: Replica = await replicas()
    admin, user, user_id = await admin_and_user(a)
    await submit_image(a.client, headers=user)  # one active job; A now holds the key

    resp = await b.client.patch(f"/v1/keys/{user_id}", json={"max_active_jobs": 1}, headers=admin)
    assert resp.status_code == 200, resp.text
    await a.heard(user_id)
    resp = await a.client.post(
        "/v1/jobs/images", json={"model": "sandbox-image", "prompt": "x"}, headers=user
    )
    assert_error(resp, 429, code="too_many_active_jobs")


async def test_with_the_listener_down_every_request_reads_the_key(
    replicas: Callable[[], Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Nothing kept while changes could go unheard: a revocation whose NOTIFY this replica
    missed is still refused at its next request; once the listener is back, keys are kept
    again."""
    a: Replica = await replicas()
    b: Replica = await replicas()
    _admin, user, user_id = await admin_and_user(a)
    job = await submit_image(a.client, headers=user)
    poll = f"/v1/jobs/{job['id']}"
    assert (await a.client.get(poll, headers=user)).status_code == 200  # kept

    listener = a.store._listener
    assert listener is not None and listener.pid is not None
    url, listener.url = listener.url, UNREACHABLE  # it cannot come back until restored
    admin = await connect()
    try:
        await admin.fetchval("SELECT pg_terminate_backend($1)", listener.pid)
    finally:
        await admin.close()
    await until(lambda: not a.store._keys_live)
    assert await a.store.key_epoch() is None

    lookups = Lookups(a.store, monkeypatch)
    for _ in range(3):
        assert (await a.client.get(poll, headers=user)).status_code == 200
    assert lookups.count == 3  # read every time, kept never

    assert await b.store.revoke_key(user_id, 1.0)  # A's listener misses the NOTIFY
    assert_error(await a.client.get(poll, headers=user), 401)
    assert user_id not in a.changes

    listener.url = url
    await a.live()
    _admin_2, other, _other_id = await admin_and_user(b)
    before = lookups.count
    other_job = await submit_image(a.client, headers=other)
    for _ in range(3):
        resp = await a.client.get(f"/v1/jobs/{other_job['id']}", headers=other)
        assert resp.status_code == 200, resp.text
    assert lookups.count - before == 1  # read once (the submit), then kept again
