"""The webhook methods of the PostgreSQL store: the deliveries outbox and the owners' secrets.

A mixin of ``PostgresJobStore`` (every statement runs on its ``pool``). Several replicas
send deliveries at once: a claim takes rows with ``FOR UPDATE SKIP LOCKED`` and moves their
``next_attempt_at`` forward as a lease, so a delivery is sent by one replica at a time, and
a result is fenced by the attempt count it was claimed with.
"""

from __future__ import annotations

import time
from abc import abstractmethod
from collections.abc import Sequence
from typing import Any

from gateway.store.base import JobStore, WebhookDelivery, WebhookSecret
from gateway.webhooks.signing import new_secret

COLUMNS = (
    "id, job_id, owner, event_key, url, payload, created_at, next_attempt_at, status, "
    "attempts, last_error, last_status_code, delivered_at"
)
CREATE_DELIVERY = (
    f"INSERT INTO webhook_deliveries ({COLUMNS}) "
    f"VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9,$10,$11,$12,$13) "
    f"ON CONFLICT (job_id, event_key) DO NOTHING RETURNING 1"
)
# materialized, as the job claim: a rescanned LIMIT ... SKIP LOCKED may pick too many rows
CLAIM_DUE = f"""
    WITH picked AS MATERIALIZED (
        SELECT seq FROM webhook_deliveries WHERE status = 'pending' AND next_attempt_at <= $1
        ORDER BY next_attempt_at LIMIT $2 FOR UPDATE SKIP LOCKED
    )
    UPDATE webhook_deliveries AS d SET next_attempt_at = $3 FROM picked
    WHERE d.seq = picked.seq RETURNING {", ".join("d." + c for c in COLUMNS.split(", "))}
"""
RECORD_RESULT = """
    UPDATE webhook_deliveries SET status = $1, attempts = $2, last_status_code = $3,
        last_error = $4, next_attempt_at = $5, delivered_at = $6
    WHERE id = $7 AND attempts = $2 - 1 AND status = 'pending'
"""
FOR_JOB = f"SELECT {COLUMNS} FROM webhook_deliveries WHERE job_id = $1 ORDER BY seq"
# a webhook without "events" means ["completed"] (gateway/webhooks/validate.py); only the
# small events array is cast to jsonb (a whole meta document might hold what jsonb refuses)
HOOKED = """
    SELECT id FROM jobs WHERE id = ANY($1::text[])
        AND json_typeof(meta -> 'webhook' -> 'url') = 'string'
"""
MISSING_COMPLETED = """
    SELECT j.id FROM jobs AS j
    WHERE j.completed_at >= $1 AND json_typeof(j.meta -> 'webhook' -> 'url') = 'string'
        AND (j.meta -> 'webhook' -> 'events' IS NULL
             OR (j.meta -> 'webhook' -> 'events')::jsonb ? 'completed')
        AND NOT EXISTS (SELECT 1 FROM webhook_deliveries AS d
                        WHERE d.job_id = j.id AND d.event_key = 'completed')
    ORDER BY j.completed_at LIMIT $2
"""
PURGE = """
    WITH picked AS MATERIALIZED (
        SELECT seq FROM webhook_deliveries WHERE created_at < $1 AND status <> 'pending'
        ORDER BY created_at LIMIT $2 FOR UPDATE SKIP LOCKED
    )
    DELETE FROM webhook_deliveries AS d USING picked WHERE d.seq = picked.seq
"""
GET_SECRET = "SELECT owner, secret, created_at FROM webhook_secrets WHERE owner = $1"
# DO UPDATE (to the stored value) returns the row a concurrent first use committed
CREATE_SECRET = """
    INSERT INTO webhook_secrets (owner, secret, created_at) VALUES ($1, $2, $3)
    ON CONFLICT (owner) DO UPDATE SET secret = webhook_secrets.secret
    RETURNING owner, secret, created_at
"""
ROTATE_SECRET = """
    INSERT INTO webhook_secrets (owner, secret, created_at) VALUES ($1, $2, $3)
    ON CONFLICT (owner) DO UPDATE SET secret = EXCLUDED.secret, created_at = EXCLUDED.created_at
"""


def _rowcount(tag: str) -> int:
    return int(tag.rpartition(" ")[2] or 0)


class PostgresWebhooks(JobStore):
    @property
    @abstractmethod
    def pool(self) -> Any:
        """The asyncpg pool (PostgresJobStore's)."""

    async def create_delivery(self, delivery: WebhookDelivery) -> bool:
        d = delivery
        inserted = await self.pool.fetchval(
            CREATE_DELIVERY,
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
        )
        return inserted is not None

    async def claim_due_deliveries(
        self, now: float, limit: int, lease: float
    ) -> list[WebhookDelivery]:
        if limit <= 0:
            return []
        rows = await self.pool.fetch(CLAIM_DUE, now, limit, now + lease)
        return sorted((WebhookDelivery(*r) for r in rows), key=lambda d: d.created_at)

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
        done = await self.pool.execute(
            RECORD_RESULT,
            status,
            attempt,
            status_code,
            error,
            next_attempt_at,
            delivered_at,
            delivery_id,
        )
        return _rowcount(done) > 0

    async def deliveries_for_job(self, job_id: str) -> list[WebhookDelivery]:
        return [WebhookDelivery(*r) for r in await self.pool.fetch(FOR_JOB, job_id)]

    async def hooked_jobs(self, job_ids: Sequence[str]) -> set[str]:
        if not job_ids:
            return set()
        return {r[0] for r in await self.pool.fetch(HOOKED, list(job_ids))}

    async def jobs_missing_completed_delivery(self, since: float, limit: int) -> list[str]:
        return [r[0] for r in await self.pool.fetch(MISSING_COMPLETED, since, limit)]

    async def purge_deliveries_before(self, cutoff: float, limit: int) -> int:
        if limit <= 0:
            return 0
        return _rowcount(await self.pool.execute(PURGE, cutoff, limit))

    async def get_or_create_webhook_secret(self, owner: str) -> WebhookSecret:
        row = await self.pool.fetchrow(GET_SECRET, owner)
        if row is None:
            row = await self.pool.fetchrow(CREATE_SECRET, owner, new_secret(), time.time())
        return WebhookSecret(*row)

    async def rotate_webhook_secret(self, owner: str) -> WebhookSecret:
        secret = WebhookSecret(owner, new_secret(), time.time())
        await self.pool.execute(ROTATE_SECRET, secret.owner, secret.secret, secret.created_at)
        return secret
