"""The API-key methods of the SQLite store: keys (by hash, by id), revocation, limits.

A mixin of ``SQLiteJobStore``: writes go through its group-committing ``_write``, reads
through its reader connection (``_read``), a key by hash (every request) as a point read on
the loop (``_point_read``). SQLite serves one process, so per-key rate-limit
buckets stay in that process (``gateway/ratelimit.py``); only the keys' own limits are here.

**The key epoch** (``key_epoch``) is one row that triggers bump in the transaction of every
change of a key (migration 9), whoever makes it: this process, ``backserv keys revoke`` in
another one, an operator in the sqlite3 shell. Reading it is a point read of a one-row table
on the loop, cheaper than reading and building the key, and it is what lets the key ring keep
keys it read without missing a revocation made by another process.
"""

from __future__ import annotations

import dataclasses
import sqlite3
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

from gateway.errors import LastAdminKey
from gateway.store.base import KEY_UPDATABLE, ApiKeyRecord, JobStore
from gateway.store.sqlite_sync import fetchall

T = TypeVar("T")

#: in ``ApiKeyRecord``'s field order
COLUMNS = (
    "id, name, key_hash, prefix, created_at, revoked_at, scopes, rate_limit, rate_burst, "
    "max_active_jobs, budget_daily, budget_monthly, budget_total"
)
#: the ids of the active keys with the ``admin`` scope (scopes are stored space-separated)
ACTIVE_ADMINS = (
    "SELECT id FROM api_keys WHERE revoked_at IS NULL AND ' ' || scopes || ' ' LIKE '% admin %'"
)


class SQLiteKeys(JobStore):
    if TYPE_CHECKING:  # provided by SQLiteJobStore

        async def _write(self, fn: Callable[[sqlite3.Connection], T]) -> T: ...

        async def _read(self, sql: str, params: tuple[Any, ...] = ()) -> list[Any]: ...

        async def _point_read(self, sql: str, params: tuple[Any, ...]) -> list[Any]: ...

        #: the read-only connection of point reads (None for an in-memory database)
        _point: sqlite3.Connection | None

    async def create_key(self, record: ApiKeyRecord) -> None:
        values = dataclasses.astuple(record)  # COLUMNS are in the record's field order

        def op(conn: sqlite3.Connection) -> None:
            marks = ",".join("?" * len(values))
            conn.execute(f"INSERT INTO api_keys ({COLUMNS}) VALUES ({marks})", values)

        await self._write(op)

    async def find_key(self, key_hash: str) -> ApiKeyRecord | None:
        # every request with a stored key: a point read, on the loop (see sqlite.py)
        rows = await self._point_read(
            f"SELECT {COLUMNS} FROM api_keys WHERE key_hash = ?", (key_hash,)
        )
        return ApiKeyRecord(*rows[0]) if rows else None

    async def key_epoch(self) -> int | None:
        if self._point is None:  # an in-memory database: its other connections see another
            return None
        rows = await self._point_read("SELECT epoch FROM key_epoch WHERE id = 1", ())
        return int(rows[0][0]) if rows else None

    async def get_key(self, key_id: str) -> ApiKeyRecord | None:
        rows = await self._read(f"SELECT {COLUMNS} FROM api_keys WHERE id = ?", (key_id,))
        return ApiKeyRecord(*rows[0]) if rows else None

    async def list_keys(self) -> list[ApiKeyRecord]:
        rows = await self._read(f"SELECT {COLUMNS} FROM api_keys ORDER BY created_at")
        return [ApiKeyRecord(*r) for r in rows]

    async def revoke_key(self, key_id: str, now: float, *, keep_an_admin: bool = False) -> bool:
        # one write of the writer thread: its transaction (BEGIN IMMEDIATE) holds the database
        # write lock from the check to the commit, so no other revocation comes in between
        def op(conn: sqlite3.Connection) -> int:
            if keep_an_admin:
                admins = [row[0] for row in conn.execute(ACTIVE_ADMINS)]
                if admins == [key_id]:
                    raise LastAdminKey(key_id)
            cur = conn.execute(
                "UPDATE api_keys SET revoked_at = ? WHERE id = ? AND revoked_at IS NULL",
                (now, key_id),
            )
            return cur.rowcount

        revoked = bool(await self._write(op))
        if revoked:
            self._keys_changed(key_id)
        return revoked

    async def update_key(self, key_id: str, changes: dict[str, Any]) -> ApiKeyRecord | None:
        unknown = set(changes) - KEY_UPDATABLE
        if unknown:
            raise ValueError(f"not an updatable key column: {sorted(unknown)}")
        if not changes:
            found = await self.get_key(key_id)
            return found if found is not None and found.revoked_at is None else None
        names = sorted(changes)
        assignments = ", ".join(f"{name} = ?" for name in names)

        def op(conn: sqlite3.Connection) -> ApiKeyRecord | None:
            rows = list(
                fetchall(
                    conn,
                    f"UPDATE api_keys SET {assignments} WHERE id = ? AND revoked_at IS NULL "
                    f"RETURNING {COLUMNS}",
                    (*(changes[n] for n in names), key_id),
                )
            )
            return ApiKeyRecord(*rows[0]) if rows else None

        updated = await self._write(op)
        if updated is not None:
            self._keys_changed(key_id)
        return updated
