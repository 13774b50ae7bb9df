"""The JobStore contract for API keys: by id, their own limits, changes and revocation.

Like ``test_contract.py``: functions of a ``store`` fixture, not collected on their own;
``test_sqlite.py`` and ``test_postgres.py`` star-import them.
"""

from __future__ import annotations

import asyncio
import dataclasses

import pytest

from gateway.errors import LastAdminKey
from gateway.store.base import ApiKeyRecord, JobStore
from tests.store.test_contract import BASE_TIME, make_key

__test__ = False  # collected through the backend modules that provide ``store``


async def test_a_key_reads_back_by_id_with_its_own_limits(store: JobStore) -> None:
    record = dataclasses.replace(
        make_key(1, BASE_TIME), rate_limit=2.5, rate_burst=7, max_active_jobs=0
    )
    await store.create_key(record)

    assert await store.get_key("key_1") == record
    assert await store.find_key("hash-1") == record
    assert (await store.list_keys()) == [record]
    assert await store.get_key("key_unknown") is None


async def test_a_key_without_limits_reads_back_with_none(store: JobStore) -> None:
    await store.create_key(make_key(1, BASE_TIME))
    found = await store.get_key("key_1")
    assert found is not None
    assert (found.rate_limit, found.rate_burst, found.max_active_jobs) == (None, None, None)


async def test_update_key_sets_only_the_given_columns(store: JobStore) -> None:
    await store.create_key(dataclasses.replace(make_key(1, BASE_TIME), rate_burst=3))

    updated = await store.update_key("key_1", {"rate_limit": 0.5, "name": "renamed"})

    assert updated is not None
    assert (updated.name, updated.rate_limit, updated.rate_burst) == ("renamed", 0.5, 3)
    assert await store.get_key("key_1") == updated
    cleared = await store.update_key("key_1", {"rate_burst": None})
    assert cleared is not None and cleared.rate_burst is None and cleared.rate_limit == 0.5


async def test_update_key_leaves_revoked_and_unknown_keys_alone(store: JobStore) -> None:
    await store.create_key(make_key(1, BASE_TIME))
    assert await store.revoke_key("key_1", BASE_TIME + 1)

    assert await store.update_key("key_1", {"rate_limit": 1.0}) is None
    assert await store.update_key("key_1", {}) is None
    assert await store.update_key("key_unknown", {"rate_limit": 1.0}) is None
    found = await store.get_key("key_1")
    assert found is not None and found.rate_limit is None


async def test_update_key_refuses_columns_that_never_change(store: JobStore) -> None:
    await store.create_key(make_key(1, BASE_TIME))
    for column in ("key_hash", "scopes", "revoked_at", "id; DROP TABLE api_keys"):
        with pytest.raises(ValueError):
            await store.update_key("key_1", {column: "x"})
    assert await store.get_key("key_1") == make_key(1, BASE_TIME)


async def test_concurrent_revocations_revoke_once(store: JobStore) -> None:
    await store.create_key(make_key(1, BASE_TIME))
    results = await asyncio.gather(*(store.revoke_key("key_1", BASE_TIME + i) for i in range(5)))
    assert sorted(results) == [False] * 4 + [True]


def _admin(n: int) -> ApiKeyRecord:
    return dataclasses.replace(make_key(n, BASE_TIME + n), scopes="admin")


async def _active_admins(store: JobStore) -> list[str]:
    return [k.id for k in await store.list_keys() if k.revoked_at is None and k.scopes == "admin"]


async def test_two_admins_revoking_each_other_at_once_leave_one(store: JobStore) -> None:
    for round_ in range(5):
        first, second = _admin(2 * round_ + 1), _admin(2 * round_ + 2)
        await store.create_key(first)
        await store.create_key(second)

        outcomes = await asyncio.gather(
            store.revoke_key(first.id, BASE_TIME + 100, keep_an_admin=True),
            store.revoke_key(second.id, BASE_TIME + 100, keep_an_admin=True),
            return_exceptions=True,
        )

        assert outcomes.count(True) == 1, outcomes
        (refused,) = [o for o in outcomes if o is not True]
        assert isinstance(refused, LastAdminKey) and refused.status_code == 409
        (survivor,) = await _active_admins(store)
        assert "last active admin key" in refused.message and survivor in refused.message
        # the next round starts from two fresh admins again (the CLI may revoke the last)
        assert await store.revoke_key(survivor, BASE_TIME + 101)
        assert await _active_admins(store) == []


async def test_keeping_an_admin_still_revokes_other_keys(store: JobStore) -> None:
    await store.create_key(_admin(1))
    await store.create_key(make_key(2, BASE_TIME))

    assert await store.revoke_key("key_2", BASE_TIME + 1, keep_an_admin=True)
    assert await store.revoke_key("key_2", BASE_TIME + 2, keep_an_admin=True) is False
    assert await store.revoke_key("key_unknown", BASE_TIME, keep_an_admin=True) is False
    with pytest.raises(LastAdminKey):
        await store.revoke_key("key_1", BASE_TIME + 3, keep_an_admin=True)
    assert await _active_admins(store) == ["key_1"]


def _with_limits(record: ApiKeyRecord) -> tuple[float | None, int | None, int | None]:
    return record.rate_limit, record.rate_burst, record.max_active_jobs


async def test_a_keys_limits_are_one_object(store: JobStore) -> None:
    record = dataclasses.replace(make_key(1, BASE_TIME), rate_limit=1.0, max_active_jobs=4)
    await store.create_key(record)
    found = await store.find_key("hash-1")
    assert found is not None
    assert _with_limits(found) == (1.0, None, 4)
    assert found.limits.rate_limit == 1.0 and found.limits.max_active_jobs == 4


async def test_key_changes_are_published_after_they_commit(store: JobStore) -> None:
    heard: list[str] = []
    store.watch_keys(heard.append)
    await store.create_key(make_key(1, BASE_TIME))
    await store.create_key(make_key(2, BASE_TIME))
    assert heard == []  # a new key changes nothing anyone kept

    await store.update_key("key_1", {"max_active_jobs": 3})
    await store.revoke_key("key_2", BASE_TIME + 1)
    await store.update_key("key_2", {"name": "revoked"})  # refused: nothing changed
    await store.revoke_key("key_2", BASE_TIME + 2)  # already revoked: nothing changed
    assert heard == ["key_1", "key_2"]


async def _epoch(store: JobStore) -> int:
    """The store's key epoch, once it is known (PostgreSQL: once its listener is up)."""
    for _ in range(1000):
        epoch = await store.key_epoch()
        if epoch is not None:
            return epoch
        await asyncio.sleep(0.01)
    raise AssertionError("the key epoch stayed unknown for 10 s")


async def test_every_change_of_a_key_moves_the_key_epoch(store: JobStore) -> None:
    store.watch_keys(lambda _key_id: None)  # PostgreSQL: follow key changes
    await store.create_key(make_key(1, BASE_TIME))
    seen = [await _epoch(store)]
    await store.update_key("key_1", {"rate_limit": 1.5})
    seen.append(await _epoch(store))
    await store.revoke_key("key_1", BASE_TIME + 1)
    seen.append(await _epoch(store))
    assert len(set(seen)) == 3, seen
    assert await _epoch(store) == seen[-1]  # and stays put while nothing changes
