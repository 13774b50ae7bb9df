"""The API-key methods of the PostgreSQL store, and the per-key rate-limit buckets.

A mixin of ``PostgresJobStore`` (every statement runs on its ``pool``).

**Buckets** (``take_rate_token``) are rows of ``rate_buckets``, one per key, refilled and
spent in a single ``INSERT ... ON CONFLICT DO UPDATE``: the row lock serialises replicas,
and each statement sees the latest committed row, so no two replicas spend one token. Time
is the database's ``clock_timestamp()``, read once per statement, so the replicas' clocks
do not matter. A statement that read the clock before waiting for the lock never moves the
bucket's clock back (``GREATEST``) and gets no refill for the wait, so the bound only errs on
the side of refusing. A refused take writes the refilled balance back (it is the same
balance, counted from a newer moment) and returns the wait until the next token. The table
is ``UNLOGGED``: a bucket is seconds of state, and after a database crash every bucket
starts full again (at most one extra burst), which is worth skipping the WAL on every submit.
"""

from __future__ import annotations

import dataclasses
from abc import abstractmethod
from typing import Any

from gateway.errors import LastAdminKey
from gateway.store.base import KEY_UPDATABLE, ApiKeyRecord, JobStore
from gateway.store.postgres_schema import KEY_CHANNEL

#: in ``ApiKeyRecord``'s field order
COLUMNS = (
    "id, name, key_hash, prefix, created_at, revoked_at, scopes, rate_limit, rate_burst, "
    "max_active_jobs, budget_daily, budget_monthly, budget_total"
)
INSERT_KEY = f"INSERT INTO api_keys ({COLUMNS}) VALUES ({','.join(f'${i}' for i in range(1, 14))})"
FIND_KEY = f"SELECT {COLUMNS} FROM api_keys WHERE key_hash = $1"
GET_KEY = f"SELECT {COLUMNS} FROM api_keys WHERE id = $1"
LIST_KEYS = f"SELECT {COLUMNS} FROM api_keys ORDER BY created_at"
# Every change of a key notifies KEY_CHANNEL ("<store instance>:<key id>") in the same
# statement, so in the same transaction: every replica hears of it at commit (and of nothing
# rolled back); the replica that made it already knew.
REVOKE_KEY = f"""
    WITH revoked AS (
        UPDATE api_keys SET revoked_at = $1 WHERE id = $2 AND revoked_at IS NULL RETURNING id
    )
    SELECT count(*), max(pg_notify('{KEY_CHANNEL}', $3 || ':' || id)::text) FROM revoked
"""
# The active admin keys, each row locked until the revoking transaction ends. A concurrent
# revocation waits for these locks; under READ COMMITTED it then re-reads every row it waited
# for (a row revoked meanwhile no longer matches), so it counts the admins that remain. The
# rows are locked in id order, so two revocations never deadlock on each other.
LOCK_ACTIVE_ADMINS = (
    "SELECT id FROM api_keys WHERE revoked_at IS NULL AND ' ' || scopes || ' ' LIKE '% admin %' "
    "ORDER BY id FOR UPDATE"
)

# $1 bucket, $2 rate (tokens/s), $3 burst. ``excluded.updated_at`` is the one clock reading.
_REFILL = (
    "LEAST($3::float8, b.tokens + GREATEST(0, excluded.updated_at - b.updated_at) * $2::float8)"
)
TAKE_TOKEN = f"""
    INSERT INTO rate_buckets AS b (bucket, tokens, updated_at, granted)
    VALUES ($1, $3::float8 - 1, extract(epoch FROM clock_timestamp()), true)
    ON CONFLICT (bucket) DO UPDATE SET
        tokens = CASE WHEN {_REFILL} >= 1 THEN {_REFILL} - 1 ELSE {_REFILL} END,
        granted = {_REFILL} >= 1,
        updated_at = GREATEST(b.updated_at, excluded.updated_at)
    RETURNING granted, tokens
"""


class PostgresKeys(JobStore):
    shares_rate_limits = True

    @property
    @abstractmethod
    def pool(self) -> Any:
        """The asyncpg pool (PostgresJobStore's)."""

    @property
    @abstractmethod
    def instance(self) -> str:
        """This store's id among the replicas, in the payload of its notifications."""

    async def create_key(self, record: ApiKeyRecord) -> None:
        # COLUMNS are in the record's field order
        await self.pool.execute(INSERT_KEY, *dataclasses.astuple(record))

    async def find_key(self, key_hash: str) -> ApiKeyRecord | None:
        row = await self.pool.fetchrow(FIND_KEY, key_hash)
        return None if row is None else ApiKeyRecord(*row)

    async def get_key(self, key_id: str) -> ApiKeyRecord | None:
        row = await self.pool.fetchrow(GET_KEY, key_id)
        return None if row is None else ApiKeyRecord(*row)

    async def list_keys(self) -> list[ApiKeyRecord]:
        return [ApiKeyRecord(*r) for r in await self.pool.fetch(LIST_KEYS)]

    async def revoke_key(self, key_id: str, now: float, *, keep_an_admin: bool = False) -> bool:
        if not keep_an_admin:
            revoked = int(await self.pool.fetchval(REVOKE_KEY, now, key_id, self.instance))
        else:
            async with self.pool.acquire() as conn, conn.transaction():
                admins = [row[0] for row in await conn.fetch(LOCK_ACTIVE_ADMINS)]
                if admins == [key_id]:
                    raise LastAdminKey(key_id)
                revoked = int(await conn.fetchval(REVOKE_KEY, now, key_id, self.instance))
        if revoked:
            self._keys_changed(key_id)
        return revoked > 0

    async def update_key(self, key_id: str, changes: dict[str, Any]) -> ApiKeyRecord | None:
        unknown = set(changes) - KEY_UPDATABLE
        if unknown:
            raise ValueError(f"not an updatable key column: {sorted(unknown)}")
        if not changes:
            found = await self.get_key(key_id)
            return found if found is not None and found.revoked_at is None else None
        names = sorted(changes)
        assignments = ", ".join(f"{name} = ${i}" for i, name in enumerate(names, start=3))
        row = await self.pool.fetchrow(
            f"WITH updated AS (UPDATE api_keys SET {assignments} "
            f"WHERE id = $1 AND revoked_at IS NULL RETURNING {COLUMNS}) "
            f"SELECT {COLUMNS}, pg_notify('{KEY_CHANNEL}', $2 || ':' || id)::text FROM updated",
            key_id,
            self.instance,
            *(changes[n] for n in names),
        )
        if row is None:
            return None
        self._keys_changed(key_id)
        return ApiKeyRecord(*tuple(row)[: len(dataclasses.fields(ApiKeyRecord))])

    async def take_rate_token(self, bucket: str, rate: float, burst: int) -> float:
        granted, tokens = await self.pool.fetchrow(TAKE_TOKEN, bucket, float(rate), float(burst))
        return 0.0 if granted else (1.0 - float(tokens)) / rate
