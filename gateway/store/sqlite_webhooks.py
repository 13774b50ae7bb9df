"""The webhook methods of the SQLite store: the deliveries outbox and the owners' secrets.

A mixin of ``SQLiteJobStore``: writes go through its group-committing ``_write``, reads
through its reader connection (``_read``).
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, TypeVar

from gateway.store.base import JobStore, WebhookDelivery, WebhookSecret
from gateway.store.sqlite_sync import fetchall
from gateway.webhooks.signing import new_secret

T = TypeVar("T")

COLUMNS = (
    "id, job_id, owner, event_key, url, payload, created_at, next_attempt_at, status, "
    "attempts, last_error, last_status_code, delivered_at"
)
_SECRET = "SELECT owner, secret, created_at FROM webhook_secrets WHERE owner = ?"
# jobs_finished holds finished jobs by completed_at; a webhook without "events" means
# ["completed"] (gateway/webhooks/validate.py)
_HAS_HOOK = "json_type(meta, '$.webhook.url') = 'text'"
_IDS_PER_QUERY = 500  # under SQLite's limit of bound parameters
_MISSING_COMPLETED = """
    SELECT j.id FROM jobs AS j INDEXED BY jobs_finished
    WHERE j.completed_at >= ? AND json_type(j.meta, '$.webhook.url') = 'text'
        AND (json_type(j.meta, '$.webhook.events') IS NULL OR EXISTS (
            SELECT 1 FROM json_each(j.meta, '$.webhook.events') AS e WHERE e.value = 'completed'))
        AND NOT EXISTS (SELECT 1 FROM webhook_deliveries AS d
                        WHERE d.job_id = j.id AND d.event_key = 'completed')
    ORDER BY j.completed_at LIMIT ?
"""


def row_to_delivery(row: Any) -> WebhookDelivery:
    return WebhookDelivery(*row)


class SQLiteWebhooks(JobStore):
    if TYPE_CHECKING:  # provided by SQLiteJobStore

        async def _write(self, fn: Callable[[sqlite3.Connection], T]) -> T: ...

        async def _read(self, sql: str, params: tuple[Any, ...] = ()) -> list[Any]: ...

    async def create_delivery(self, delivery: WebhookDelivery) -> bool:
        d = delivery

        def op(conn: sqlite3.Connection) -> int:
            cur = conn.execute(
                f"INSERT INTO webhook_deliveries ({COLUMNS}) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?) "
                f"ON CONFLICT (job_id, event_key) DO NOTHING",
                (
                    d.id,
                    d.job_id,
                    d.owner,
                    d.event_key,
                    d.url,
                    d.payload,
                    d.created_at,
                    d.next_attempt_at,
                    d.status,
                    d.attempts,
                    d.last_error,
                    d.last_status_code,
                    d.delivered_at,
                ),
            )
            return cur.rowcount

        return bool(await self._write(op))

    async def claim_due_deliveries(
        self, now: float, limit: int, lease: float
    ) -> list[WebhookDelivery]:
        if limit <= 0:
            return []

        def op(conn: sqlite3.Connection) -> list[WebhookDelivery]:
            rows = fetchall(
                conn,
                f"UPDATE webhook_deliveries SET next_attempt_at = ? WHERE seq IN ("
                f"SELECT seq FROM webhook_deliveries WHERE status = 'pending' "
                f"AND next_attempt_at <= ? ORDER BY next_attempt_at LIMIT ?) RETURNING {COLUMNS}",
                (now + lease, now, limit),
            )
            return [row_to_delivery(r) for r in rows]

        claimed = await self._write(op)
        claimed.sort(key=lambda d: d.created_at)
        return claimed

    async def record_delivery_result(
        self,
        delivery_id: str,
        attempt: int,
        *,
        status: str,
        status_code: int | None,
        error: str | None,
        next_attempt_at: float,
        now: float,
    ) -> bool:
        delivered_at = now if status == "delivered" else None

        def op(conn: sqlite3.Connection) -> int:
            cur = conn.execute(
                "UPDATE webhook_deliveries SET status = ?, attempts = ?, last_status_code = ?, "
                "last_error = ?, next_attempt_at = ?, delivered_at = ? "
                "WHERE id = ? AND attempts = ? AND status = 'pending'",
                (
                    status,
                    attempt,
                    status_code,
                    error,
                    next_attempt_at,
                    delivered_at,
                    delivery_id,
                    attempt - 1,
                ),
            )
            return cur.rowcount

        return bool(await self._write(op))

    async def deliveries_for_job(self, job_id: str) -> list[WebhookDelivery]:
        rows = await self._read(
            f"SELECT {COLUMNS} FROM webhook_deliveries WHERE job_id = ? ORDER BY seq", (job_id,)
        )
        return [row_to_delivery(r) for r in rows]

    async def hooked_jobs(self, job_ids: Sequence[str]) -> set[str]:
        found: set[str] = set()
        ids = list(job_ids)
        for start in range(0, len(ids), _IDS_PER_QUERY):
            chunk = ids[start : start + _IDS_PER_QUERY]
            marks = ",".join("?" * len(chunk))
            sql = f"SELECT id FROM jobs WHERE id IN ({marks}) AND {_HAS_HOOK}"
            found.update(r[0] for r in await self._read(sql, tuple(chunk)))
        return found

    async def jobs_missing_completed_delivery(self, since: float, limit: int) -> list[str]:
        rows = await self._read(_MISSING_COMPLETED, (since, limit))
        return [r[0] for r in rows]

    async def purge_deliveries_before(self, cutoff: float, limit: int) -> int:
        if limit <= 0:
            return 0

        def op(conn: sqlite3.Connection) -> int:
            cur = conn.execute(
                "DELETE FROM webhook_deliveries WHERE seq IN (SELECT seq FROM "
                "webhook_deliveries WHERE created_at < ? AND status != 'pending' "
                "ORDER BY created_at LIMIT ?)",
                (cutoff, limit),
            )
            return cur.rowcount

        return int(await self._write(op))

    async def get_or_create_webhook_secret(self, owner: str) -> WebhookSecret:
        rows = await self._read(_SECRET, (owner,))
        if rows:
            return WebhookSecret(*rows[0])
        candidate, now = new_secret(), time.time()

        def op(conn: sqlite3.Connection) -> WebhookSecret:
            conn.execute(
                "INSERT INTO webhook_secrets (owner, secret, created_at) VALUES (?, ?, ?) "
                "ON CONFLICT (owner) DO NOTHING",
                (owner, candidate, now),
            )
            stored = list(fetchall(conn, _SECRET, (owner,)))
            return WebhookSecret(*stored[0])

        return await self._write(op)

    async def rotate_webhook_secret(self, owner: str) -> WebhookSecret:
        secret = WebhookSecret(owner, new_secret(), time.time())

        def op(conn: sqlite3.Connection) -> None:
            conn.execute(
                "INSERT INTO webhook_secrets (owner, secret, created_at) VALUES (?, ?, ?) "
                "ON CONFLICT (owner) DO UPDATE SET secret = excluded.secret, "
                "created_at = excluded.created_at",
                (secret.owner, secret.secret, secret.created_at),
            )

        await self._write(op)
        return secret
