"""PostgresJobStore: the JobStore contract, plus what only the replicated store promises.

Needs a PostgreSQL server: ``BACKSERV_TEST_POSTGRES_URL`` (default: the local ``test``
database). Without one these tests skip, except in CI (``CI=true``), where they fail. Each
test works in a fresh random schema, dropped afterwards.
"""

from __future__ import annotations

import asyncio
import secrets
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest

from gateway.errors import ServiceUnavailable
from gateway.jobs import Status
from gateway.store.postgres import PostgresJobStore
from gateway.store.postgres_schema import MIGRATIONS, quote_ident
from tests.postgres import URL, connect
from tests.store.test_active_contract import *  # noqa: F403 - active jobs, on PostgreSQL
from tests.store.test_contract import *  # noqa: F403 - the contract suite, run against PostgreSQL
from tests.store.test_contract import BASE_TIME, insert, make_job, make_key, stored
from tests.store.test_counts_contract import *  # noqa: F403 - job counts, on PostgreSQL
from tests.store.test_keys_contract import *  # noqa: F403 - api keys, on PostgreSQL
from tests.store.test_latency_contract import *  # noqa: F403 - latencies, on PostgreSQL
from tests.store.test_postgres_buckets import *  # noqa: F403 - shared rate limits
from tests.store.test_spend_contract import *  # noqa: F403 - spend, on PostgreSQL
from tests.store.test_webhook_contract import *  # noqa: F403 - webhooks, on PostgreSQL


@pytest.fixture
async def admin() -> AsyncIterator[Any]:
    """A plain connection to the test database, outside any store."""
    conn = await connect()
    try:
        yield conn
    finally:
        await conn.close()


@pytest.fixture
async def schema(admin: Any) -> AsyncIterator[str]:
    name = f"backserv_test_{secrets.token_hex(6)}"
    try:
        yield name
    finally:
        await admin.execute(f"DROP SCHEMA IF EXISTS {quote_ident(name)} CASCADE")


@pytest.fixture
async def replicas(schema: str) -> AsyncIterator[Callable[[], PostgresJobStore]]:
    """Make stores on the test schema (each one a "replica"); all closed afterwards."""
    made: list[PostgresJobStore] = []

    def make() -> PostgresJobStore:
        made.append(PostgresJobStore(URL, schema=schema, min_connections=1))
        return made[-1]

    try:
        yield make
    finally:
        for s in made:
            await s.close()


@pytest.fixture
async def pg_store(replicas: Callable[[], PostgresJobStore]) -> PostgresJobStore:
    """One open PostgreSQL store on the test schema."""
    s = replicas()
    await s.open()
    return s


@pytest.fixture
def store(pg_store: PostgresJobStore) -> PostgresJobStore:
    """The contract suite's ``store`` in this module: PostgreSQL, not the shared SQLite one."""
    return pg_store


async def _open_pair(
    replicas: Callable[[], PostgresJobStore],
) -> tuple[PostgresJobStore, PostgresJobStore]:
    a, b = replicas(), replicas()
    await asyncio.gather(a.open(), b.open())
    return a, b


async def _until(condition: Callable[[], bool], timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("the condition did not hold in time")
        await asyncio.sleep(0.01)


class Signals:
    """What a subscriber was told."""

    def __init__(self) -> None:
        self.work = asyncio.Event()
        self.cancelled: list[str] = []
        self.cancel = asyncio.Event()

    def on_cancel(self, job_id: str) -> None:
        self.cancelled.append(job_id)
        self.cancel.set()


async def _subscribed(s: PostgresJobStore) -> Signals:
    signals = Signals()
    s.subscribe(signals.work.set, signals.on_cancel)
    await _until(lambda: s.listener_pid is not None)
    return signals


# -- schema -----------------------------------------------------------------------------------


async def test_replicas_opening_together_apply_each_migration_once(
    replicas: Callable[[], PostgresJobStore],
) -> None:
    stores = [replicas() for _ in range(4)]

    await asyncio.gather(*(s.open() for s in stores))

    versions = await stores[0].pool.fetch("SELECT version FROM schema_migrations ORDER BY 1")
    assert [v[0] for v in versions] == list(range(1, len(MIGRATIONS) + 1))
    job = await insert(stores[1])
    assert (await stored(stores[3], job.id)).id == job.id


async def test_jobs_keys_and_meta_survive_close_and_reopen(
    replicas: Callable[[], PostgresJobStore],
) -> None:
    first = replicas()
    await first.open()
    job = await insert(first, meta={"face": "jobs"})
    claimed = (await first.claim("sandbox", 1, "w1", 30.0))[0]
    await first.finish(job.id, claimed.lease_token, Status.COMPLETED, result={"files": []})
    await first.set_meta_if_absent("secret_key", "s3cret")
    await first.close()

    second = replicas()
    await second.open()
    got = await stored(second, job.id)
    assert got.status is Status.COMPLETED
    assert got.meta == {"face": "jobs"}
    assert got.result == {"files": []}
    assert await second.get_meta("secret_key") == "s3cret"
    assert await second.pool.fetchval("SELECT count(*) FROM schema_migrations") == len(MIGRATIONS)


async def test_json_documents_keep_nul_escapes_and_key_order(pg_store: PostgresJobStore) -> None:
    job = await insert(pg_store, input={"z": "a\x00b", "a": 1})
    got = await stored(pg_store, job.id)
    assert got.input == {"z": "a\x00b", "a": 1}
    assert list(got.input) == ["z", "a"]


# -- the writer -------------------------------------------------------------------------------


async def test_concurrent_inserts_through_two_replicas_all_persist(
    replicas: Callable[[], PostgresJobStore],
) -> None:
    a, b = await _open_pair(replicas)
    jobs = [make_job(input={"prompt": f"p{i}"}) for i in range(500)]

    await asyncio.gather(*((a if i % 2 else b).insert_job(j) for i, j in enumerate(jobs)))

    listed, more = await a.list_jobs(None, limit=1000)
    assert {j.id for j in listed} == {j.id for j in jobs}
    assert more is False
    assert (await stored(b, jobs[123].id)).input == {"prompt": "p123"}


async def test_close_commits_inserts_already_queued_then_refuses_new_ones(
    replicas: Callable[[], PostgresJobStore],
) -> None:
    first = replicas()
    await first.open()
    jobs = [make_job() for _ in range(50)]
    pending = [asyncio.create_task(first.insert_job(j)) for j in jobs]
    await asyncio.sleep(0)  # every insert is queued

    await first.close()

    assert await asyncio.gather(*pending) == [None] * 50
    with pytest.raises(ServiceUnavailable):
        await first.insert_job(make_job())
    second = replicas()
    await second.open()
    listed, _ = await second.list_jobs(None, limit=100)
    assert len(listed) == 50


# -- claims across replicas -------------------------------------------------------------------


async def test_replicas_claiming_together_never_share_a_job_nor_exceed_the_lane_limit(
    replicas: Callable[[], PostgresJobStore],
) -> None:
    lane_limit, total = 3, 60
    a, b = await _open_pair(replicas)
    for _ in range(total):
        await insert(a, lane="gpu")
    claimed: list[str] = []
    held = peak = 0

    async def worker(s: PostgresJobStore, name: str) -> None:
        nonlocal held, peak
        deadline = time.monotonic() + 15
        while len(claimed) < total and time.monotonic() < deadline:
            jobs = await s.claim("gpu", 2, name, 30.0, lane_limit=lane_limit)
            held += len(jobs)  # each is PROCESSING in the database from here ...
            peak = max(peak, held)
            claimed.extend(j.id for j in jobs)
            await asyncio.sleep(0.005)
            for j in jobs:
                held -= 1  # ... to here at least
                await s.finish(j.id, j.lease_token, Status.COMPLETED, result={"files": []})

    async def monitor() -> int:
        highest = 0
        while len(claimed) < total:
            running = await a.pool.fetchval(
                "SELECT count(*) FROM jobs WHERE lane = 'gpu' AND status = 'PROCESSING'"
            )
            highest = max(highest, running)
            await asyncio.sleep(0.002)
        return highest

    watch = asyncio.create_task(monitor())
    await asyncio.gather(
        *(worker(s, f"{s_name}{i}") for s, s_name in ((a, "a"), (b, "b")) for i in range(3))
    )
    highest = await asyncio.wait_for(watch, 5)

    assert len(claimed) == len(set(claimed)) == total, "a job was claimed twice or never"
    assert peak == lane_limit  # the limit was reached, and never passed
    assert highest <= lane_limit


async def test_lane_limit_counts_every_replicas_running_jobs(
    replicas: Callable[[], PostgresJobStore],
) -> None:
    a, b = await _open_pair(replicas)
    for _ in range(5):
        await insert(a, lane="gpu")

    first = await a.claim("gpu", 2, "a1", 30.0, lane_limit=3)
    second = await b.claim("gpu", 2, "b1", 30.0, lane_limit=3)

    assert (len(first), len(second)) == (2, 1)
    assert await a.claim("gpu", 5, "a1", 30.0, lane_limit=3) == []


# -- notifications ----------------------------------------------------------------------------


async def test_insert_through_one_replica_wakes_the_others_subscriber(
    replicas: Callable[[], PostgresJobStore],
) -> None:
    a, b = await _open_pair(replicas)
    signals = await _subscribed(b)

    await insert(a)

    await asyncio.wait_for(signals.work.wait(), 1.0)


async def test_release_and_requeue_wake_the_others_subscriber(
    replicas: Callable[[], PostgresJobStore],
) -> None:
    a, b = await _open_pair(replicas)
    await insert(a)
    await insert(a)
    first, _ = await a.claim("sandbox", 2, "w1", 10.0)
    signals = await _subscribed(b)

    await a.release(first.id, first.lease_token, [])
    await asyncio.wait_for(signals.work.wait(), 1.0)
    signals.work.clear()
    assert await a.requeue_expired(time.time() + 100) == 1
    await asyncio.wait_for(signals.work.wait(), 1.0)


async def test_cancel_through_one_replica_reaches_the_others_on_cancel(
    replicas: Callable[[], PostgresJobStore],
) -> None:
    a, b = await _open_pair(replicas)
    job = await insert(a)
    signals = await _subscribed(b)

    await a.cancel(job.id)

    await asyncio.wait_for(signals.cancel.wait(), 1.0)
    assert signals.cancelled == [job.id]


async def test_a_change_through_one_replica_reaches_the_others_watchers_once(
    replicas: Callable[[], PostgresJobStore],
) -> None:
    a, b = await _open_pair(replicas)
    heard_a: list[str] = []
    heard_b: list[str] = []
    a.watch_changes(heard_a.append)
    b.watch_changes(heard_b.append)
    await asyncio.sleep(0.2)  # b's listener connects
    job = await insert(a)
    claimed = (await a.claim("sandbox", 1, "w1", 30.0))[0]

    await a.save_progress(job.id, claimed.lease_token, 30, None)

    deadline = time.monotonic() + 2
    while heard_b.count(job.id) < 2:
        assert time.monotonic() < deadline, heard_b
        await asyncio.sleep(0.02)
    await asyncio.sleep(0.2)  # a's own notification echoes back: it must be ignored
    assert heard_a.count(job.id) == 2


async def test_subscribing_before_open_listens_once_open(
    replicas: Callable[[], PostgresJobStore],
) -> None:
    a, b = replicas(), replicas()
    signals = Signals()
    b.subscribe(signals.work.set, signals.on_cancel)
    b.subscribe(signals.work.set, signals.on_cancel)  # a restarted scheduler: still once
    await asyncio.gather(a.open(), b.open())
    await _until(lambda: b.listener_pid is not None)

    job = await insert(a)
    await a.cancel(job.id)

    await asyncio.wait_for(signals.cancel.wait(), 1.0)
    await asyncio.sleep(0.05)
    assert signals.cancelled == [job.id]
    assert signals.work.is_set()


async def test_listener_reconnects_after_its_connection_is_terminated(
    replicas: Callable[[], PostgresJobStore], admin: Any
) -> None:
    a, b = await _open_pair(replicas)
    signals = await _subscribed(b)
    old_pid = b.listener_pid

    assert await admin.fetchval("SELECT pg_terminate_backend($1)", old_pid) is True
    await _until(lambda: b.listener_pid not in (None, old_pid))

    assert signals.work.is_set(), "a reconnect must wake the subscriber (it may have missed work)"
    signals.work.clear()
    await insert(a)
    await asyncio.wait_for(signals.work.wait(), 1.0)


async def test_a_key_change_on_one_replica_moves_the_others_key_epoch(
    replicas: Callable[[], PostgresJobStore],
) -> None:
    a, b = await _open_pair(replicas)
    heard: list[str] = []
    b.watch_keys(heard.append)
    await _until(lambda: b._keys_live)
    await a.create_key(make_key(1, BASE_TIME))
    before = await b.key_epoch()

    await a.revoke_key("key_1", BASE_TIME + 1)
    await _until(lambda: heard == ["key_1"])
    after = await b.key_epoch()
    assert before is not None and after is not None and after != before


async def test_the_key_epoch_is_unknown_while_the_listener_is_down_and_new_after(
    replicas: Callable[[], PostgresJobStore], admin: Any
) -> None:
    _a, b = await _open_pair(replicas)
    b.watch_keys(lambda _key_id: None)
    await _until(lambda: b.listener_pid is not None and b._keys_live)
    before = await b.key_epoch()
    listener = b._listener
    assert listener is not None and before is not None
    url, listener.url = listener.url, "postgresql://postgres@127.0.0.1:1/none"

    assert await admin.fetchval("SELECT pg_terminate_backend($1)", b.listener_pid) is True
    await _until(lambda: not b._keys_live)
    assert await b.key_epoch() is None

    listener.url = url
    await _until(lambda: b._keys_live, timeout=20.0)
    after = await b.key_epoch()
    assert after is not None and after != before  # what was kept before is not used again


async def test_a_relayed_delivery_reaches_the_other_replica_with_its_state_when_it_fits(
    replicas: Callable[[], PostgresJobStore],
) -> None:
    a, b = await _open_pair(replicas)
    heard_a: list[tuple[str, str, str | None]] = []
    heard_b: list[tuple[str, str, str | None]] = []
    a.watch_deliveries(lambda *relayed: heard_a.append(relayed))
    b.watch_deliveries(lambda *relayed: heard_b.append(relayed))
    await _until(lambda: a.listener_pid is not None and b.listener_pid is not None)
    state = '{"kind":"succeeded","outputs":[{"content_type":"image/png","url":"u\\nv"}]}'

    await a.relay_delivery("fal", "req-1", state)
    await a.relay_delivery("fal", "req-2", "x" * 8000)  # past NOTIFY's limit: bare
    await a.relay_delivery("fal", "req-3", None)

    await _until(lambda: len(heard_b) == 3)
    assert heard_b == [("fal", "req-1", state), ("fal", "req-2", None), ("fal", "req-3", None)]
    await asyncio.sleep(0.2)  # a's own NOTIFYs echo back: its ingress already delivered them
    assert heard_a == []
