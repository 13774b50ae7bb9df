"""The PostgreSQL side of the store: its migrations and every statement run against them.

The tables and the SQL that reads and writes them live together, so a column change is one
file; ``postgres.py`` holds the connections, the writer and the listener.

Migrations are versioned rows of ``schema_migrations``. ``migrate`` runs them in one
transaction under a transaction-scoped advisory lock keyed on the schema, so replicas that
start together take turns: the first applies what is pending, the others find nothing to do.

The columns mirror SQLite's (``sqlite_schema.py``): text ids, a ``bigserial`` ``seq`` for
ordering and cursors, epoch seconds as ``double precision``. JSON documents are ``json``, not
``jsonb``: ``json`` keeps the text orjson wrote byte for byte (key order, and ``\\u0000``
escapes, which ``jsonb`` rejects: a prompt SQLite stores would fail here), costs no
re-encoding on the insert path, and still checks the syntax and answers ``->``/``->>`` for
ad-hoc queries. Nothing in the gateway queries inside a document, so jsonb's indexable binary
form would buy nothing today; orjson encodes and decodes in Python, as for SQLite.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import orjson

from gateway.jobs import Job, Status
from gateway.store.base import META_KEY
from gateway.store.rows import dump_attempts
from gateway.store.transitions import CANCELLABLE, CLAIMABLE, FINISHABLE, RELEASABLE

log = logging.getLogger("backserv.store")

MIGRATIONS: tuple[str, ...] = (
    # 1: jobs, api keys, metadata (the SQLite schema's migrations 1 and 2 together)
    """
    CREATE TABLE jobs (
        seq            bigserial PRIMARY KEY,
        id             text NOT NULL UNIQUE,
        owner          text NOT NULL,
        kind           text NOT NULL,
        model          text NOT NULL,
        lane           text NOT NULL,
        status         text NOT NULL CHECK (status IN
                           ('QUEUED', 'PROCESSING', 'COMPLETED', 'FAILED', 'CANCELLED')),
        priority       integer NOT NULL DEFAULT 0,
        progress       integer NOT NULL DEFAULT 0,
        queue_position integer,
        input          json NOT NULL,
        result         json,
        error          json,
        attempts       json NOT NULL DEFAULT '[]',
        meta           json NOT NULL DEFAULT '{}',
        created_at     double precision NOT NULL,
        updated_at     double precision,
        started_at     double precision,
        completed_at   double precision,
        lease_token    bigint NOT NULL DEFAULT 0,
        lease_owner    text,
        lease_expires  double precision
    );
    CREATE INDEX jobs_owner_seq ON jobs (owner, seq);
    CREATE INDEX jobs_claim ON jobs (lane, priority DESC, seq) WHERE status = 'QUEUED';
    CREATE INDEX jobs_lease ON jobs (lease_expires) WHERE status = 'PROCESSING';
    CREATE INDEX jobs_lane_running ON jobs (lane) WHERE status = 'PROCESSING';

    CREATE TABLE api_keys (
        id          text PRIMARY KEY,
        name        text NOT NULL,
        key_hash    text NOT NULL UNIQUE,
        prefix      text NOT NULL,
        scopes      text NOT NULL DEFAULT '',
        created_at  double precision NOT NULL,
        revoked_at  double precision
    );

    CREATE TABLE meta (
        key   text PRIMARY KEY,
        value text NOT NULL
    );
    """,
    # 2: idempotency keys, unique per owner, in the job's own row (SQLite's migration 3).
    # Adding nullable columns without a default rewrites nothing; the index build does block
    # writes to jobs while it runs (once, at the upgrade).
    """
    ALTER TABLE jobs ADD COLUMN idempotency_key text, ADD COLUMN request_hash text;
    CREATE UNIQUE INDEX jobs_owner_idempotency_key ON jobs (owner, idempotency_key)
        WHERE idempotency_key IS NOT NULL;
    """,
    # 3: retention (SQLite's migration 4): both indexes are partial on completed_at, so a
    # new job's insert touches neither
    """
    ALTER TABLE jobs ADD COLUMN files_purged_at double precision;
    CREATE INDEX jobs_files_due ON jobs (completed_at)
        WHERE files_purged_at IS NULL AND completed_at IS NOT NULL;
    CREATE INDEX jobs_finished ON jobs (completed_at) WHERE completed_at IS NOT NULL;
    """,
    # 4: webhooks (SQLite's migration 5): the outbox of deliveries, one per job and event,
    # and each owner's signing secret
    """
    CREATE TABLE webhook_deliveries (
        seq              bigserial PRIMARY KEY,
        id               text NOT NULL UNIQUE,
        job_id           text NOT NULL,
        owner            text NOT NULL,
        event_key        text NOT NULL,
        url              text NOT NULL,
        payload          text NOT NULL,
        status           text NOT NULL DEFAULT 'pending'
                             CHECK (status IN ('pending', 'delivered', 'failed')),
        attempts         integer NOT NULL DEFAULT 0,
        next_attempt_at  double precision NOT NULL,
        last_error       text,
        last_status_code integer,
        created_at       double precision NOT NULL,
        delivered_at     double precision
    );
    CREATE UNIQUE INDEX webhook_deliveries_job_event ON webhook_deliveries (job_id, event_key);
    CREATE INDEX webhook_deliveries_due ON webhook_deliveries (next_attempt_at)
        WHERE status = 'pending';
    CREATE INDEX webhook_deliveries_created ON webhook_deliveries (created_at);

    CREATE TABLE webhook_secrets (
        owner      text PRIMARY KEY,
        secret     text NOT NULL,
        created_at double precision NOT NULL
    );
    """,
    # per-key cap on active jobs (BACKSERV_MAX_ACTIVE_JOBS_PER_KEY): count an owner's
    # QUEUED and PROCESSING jobs from a partial index that holds only those
    """
    CREATE INDEX jobs_owner_active ON jobs (owner)
        WHERE status IN ('QUEUED', 'PROCESSING');
    """,
    # 6 (SQLite's 7): each key's own limits on job creation (NULL: the settings' default),
    # and the token buckets every replica shares (postgres_keys.py). Unlogged: a bucket is
    # seconds of state, not worth a WAL record per submit; a crash refills every bucket.
    # Each row is rewritten at every submit: room left in each page keeps those updates HOT.
    """
    ALTER TABLE api_keys ADD COLUMN rate_limit double precision,
        ADD COLUMN rate_burst integer, ADD COLUMN max_active_jobs integer;
    CREATE UNLOGGED TABLE rate_buckets (
        bucket     text PRIMARY KEY,
        tokens     double precision NOT NULL,
        updated_at double precision NOT NULL,
        granted    boolean NOT NULL
    ) WITH (fillfactor = 50);
    """,
    # 7 (SQLite's 8): spend (gateway/spend.py): each key's budgets (micros; NULL: none),
    # its running totals (one row per key, rewritten by every submit of a key with a budget:
    # room in each page keeps those updates HOT), and the usage ledger (one row per priced
    # attempt, kept when retention deletes the job)
    """
    ALTER TABLE api_keys ADD COLUMN budget_daily bigint,
        ADD COLUMN budget_monthly bigint, ADD COLUMN budget_total bigint;
    CREATE TABLE key_spend (
        owner       text PRIMARY KEY,
        day         text NOT NULL,
        day_spent   bigint NOT NULL,
        month       text NOT NULL,
        month_spent bigint NOT NULL,
        total_spent bigint NOT NULL
    ) WITH (fillfactor = 50);
    CREATE TABLE usage (
        job_id   text NOT NULL,
        n        integer NOT NULL,
        owner    text NOT NULL,
        model    text NOT NULL,
        provider text NOT NULL,
        day      text NOT NULL,
        cost     bigint NOT NULL,
        PRIMARY KEY (job_id, n)
    );
    CREATE INDEX usage_day ON usage (day, owner);
    """,
)

#: the unique index that holds idempotency keys (asyncpg reports it as ``constraint_name``)
IDEMPOTENCY_INDEX = "jobs_owner_idempotency_key"


def quote_ident(name: str) -> str:
    """``name`` as an SQL identifier, whatever characters it holds."""
    return '"' + name.replace('"', '""') + '"'


async def migrate(conn: Any, schema: str | None) -> list[int]:
    """Create ``schema`` if needed and apply pending migrations; return the numbers applied.

    ``conn`` is an asyncpg connection whose ``search_path`` already names ``schema``.
    """
    applied: list[int] = []
    async with conn.transaction():
        await conn.execute(
            "SELECT pg_advisory_xact_lock(hashtextextended($1, 0))",
            f"backserv.migrate:{schema or ''}",
        )
        # look before creating: CREATE ... IF NOT EXISTS checks the CREATE privilege first,
        # which a least-privileged runtime role need not hold once the tables exist
        exists = "SELECT EXISTS (SELECT 1 FROM pg_namespace WHERE nspname = $1)"
        if schema is not None and not await conn.fetchval(exists, schema):
            await conn.execute(f"CREATE SCHEMA {quote_ident(schema)}")
        if await conn.fetchval("SELECT to_regclass('schema_migrations')") is None:
            await conn.execute(
                "CREATE TABLE schema_migrations ("
                "version integer PRIMARY KEY, applied_at double precision NOT NULL)"
            )
        current = int(
            await conn.fetchval("SELECT coalesce(max(version), 0) FROM schema_migrations")
        )
        if current > len(MIGRATIONS):
            log.warning(
                "the database is at schema version %d, newer than this code's %d",
                current,
                len(MIGRATIONS),
            )
        for number, script in enumerate(MIGRATIONS[current:], start=current + 1):
            log.info("applying schema migration %d", number)
            await conn.execute(script)
            await conn.execute(
                "INSERT INTO schema_migrations (version, applied_at) "
                "VALUES ($1, extract(epoch FROM clock_timestamp()))",
                number,
            )
            applied.append(number)
    return applied


# -- statements ---------------------------------------------------------------------------

WORK_CHANNEL, CANCEL_CHANNEL = "backserv_work", "backserv_cancel"
#: payload "<store instance>:<job id>": a job's status or progress changed
JOB_CHANNEL = "backserv_job"
#: a provider webhook delivery arrived at some replica: "provider\nrequest_id"
DELIVERY_CHANNEL = "backserv_delivery"
#: a stored key changed (revoked, new limits or name): its id, sent in the changing
#: transaction (postgres_keys.py), so it is delivered at commit or never
KEY_CHANNEL = "backserv_key"
NOTIFY_DELIVERY = f"SELECT pg_notify('{DELIVERY_CHANNEL}', $1)"
NOTIFY_CHANGED = f"SELECT pg_notify('{JOB_CHANNEL}', $1 || ':' || x) FROM unnest($2::text[]) AS x"
NOTIFY_WORK = f"NOTIFY {WORK_CHANNEL}"

JOB_COLUMNS = (
    "id, owner, kind, model, lane, status, priority, progress, queue_position, input, result, "
    "error, attempts, meta, created_at, updated_at, started_at, completed_at, lease_token, "
    "lease_owner, lease_expires, idempotency_key, request_hash, files_purged_at"
)
INSERT_JOB = (
    "INSERT INTO jobs (id, owner, kind, model, lane, status, priority, progress, input, "
    "attempts, meta, created_at, updated_at, idempotency_key, request_hash) "
    "VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9,$10,$11,$12,$13,$14,$15)"
)
SELECT_JOB = f"SELECT {JOB_COLUMNS} FROM jobs WHERE id = $1"
FIND_BY_IDEMPOTENCY_KEY = (
    f"SELECT {JOB_COLUMNS} FROM jobs WHERE owner = $1 AND idempotency_key = $2"
)
CANCEL = f"""
    WITH cancelled AS (
        UPDATE jobs SET status = 'CANCELLED', completed_at = $1, updated_at = $1,
            lease_owner = NULL, lease_expires = NULL
        WHERE id = $2 AND {CANCELLABLE} RETURNING {JOB_COLUMNS}
    )
    SELECT {JOB_COLUMNS}, pg_notify('{CANCEL_CHANNEL}', id)::text FROM cancelled
"""

LANE_LOCK = "SELECT pg_advisory_xact_lock(hashtextextended($1, 0))"
COUNT_RUNNING = "SELECT count(*) FROM jobs WHERE status = 'PROCESSING' AND lane = $1"
# The picked rows are materialized once: a plain ``seq IN (subquery)`` may be planned as a
# rescanned semi-join, and a rescanned LIMIT ... SKIP LOCKED can pick more than LIMIT rows.
CLAIM = f"""
    WITH picked AS MATERIALIZED (
        SELECT seq FROM jobs WHERE {CLAIMABLE} AND lane = $1
        ORDER BY priority DESC, seq LIMIT $5 FOR UPDATE SKIP LOCKED
    ), claimed AS (
        UPDATE jobs SET status = 'PROCESSING', lease_token = lease_token + 1,
            lease_owner = $2, lease_expires = $3, updated_at = $4,
            started_at = COALESCE(started_at, $4)
        FROM picked WHERE jobs.seq = picked.seq
        RETURNING jobs.seq AS seq, {JOB_COLUMNS}
    )
    SELECT {JOB_COLUMNS} FROM claimed ORDER BY priority DESC, seq
"""
HEARTBEAT = """
    UPDATE jobs SET lease_expires = $1 FROM unnest($2::text[], $3::bigint[]) AS held(id, token)
    WHERE jobs.id = held.id AND jobs.lease_token = held.token AND jobs.lease_owner = $4
        AND jobs.status = 'PROCESSING'
    RETURNING jobs.id
"""
SAVE_PROGRESS = """
    UPDATE jobs SET progress = $1, queue_position = $2, updated_at = $3
    WHERE id = $4 AND lease_token = $5 AND status = 'PROCESSING'
"""
SAVE_ATTEMPTS = "UPDATE jobs SET attempts = $1, updated_at = $2 WHERE id = $3 AND lease_token = $4"
SAVE_ATTEMPTS_ACTIVE = SAVE_ATTEMPTS + " AND status = 'PROCESSING'"
FINISH = f"""
    UPDATE jobs SET status = $1, result = $2, error = $3, attempts = COALESCE($4, attempts),
        completed_at = $5, updated_at = $5, queue_position = NULL, lease_owner = NULL,
        lease_expires = NULL, progress = CASE WHEN $1 = 'COMPLETED' THEN 100 ELSE progress END
    WHERE id = $6 AND lease_token = $7 AND {FINISHABLE}
"""


def _counting_notify(update: str) -> str:
    """``update`` returning how many rows it changed, and waking workers if any."""
    return (
        f"WITH done AS ({update} RETURNING 1) SELECT count(*), CASE WHEN count(*) > 0 "
        f"THEN pg_notify('{WORK_CHANNEL}', '')::text END FROM done"
    )


RELEASE = _counting_notify(
    "UPDATE jobs SET status = 'QUEUED', attempts = $1, updated_at = $2, lease_owner = NULL, "
    f"lease_expires = NULL WHERE id = $3 AND lease_token = $4 AND {RELEASABLE}"
)
REQUEUE_EXPIRED = (
    "UPDATE jobs SET status = 'QUEUED', lease_owner = NULL, lease_expires = NULL, "
    f"updated_at = $1 WHERE {RELEASABLE} AND lease_expires < $1 RETURNING id"
)
#: each half reads one partial index (claims, running jobs), never the whole table
COUNT_ACTIVE = "SELECT count(*) FROM jobs WHERE owner = $1 AND status IN ('QUEUED', 'PROCESSING')"
COUNT_BY_STATUS_AND_LANE = (
    "SELECT 'QUEUED', lane, count(*) FROM jobs WHERE status = 'QUEUED' GROUP BY lane "
    "UNION ALL "
    "SELECT 'PROCESSING', lane, count(*) FROM jobs WHERE status = 'PROCESSING' GROUP BY lane"
)


#: newest completions first, through the partial index of finished jobs (the web catalog)
RECENT_LATENCIES = (
    "SELECT model, completed_at - created_at FROM jobs WHERE completed_at IS NOT NULL "
    "AND status = 'COMPLETED' ORDER BY completed_at DESC LIMIT $1"
)

_FINISHED = "status IN ('COMPLETED', 'FAILED', 'CANCELLED')"
JOBS_WITH_FILES_BEFORE = f"""
    SELECT id FROM jobs WHERE files_purged_at IS NULL AND completed_at < $1 AND {_FINISHED}
    ORDER BY completed_at LIMIT $2
"""
MARK_FILES_PURGED = (
    "UPDATE jobs SET files_purged_at = $1 WHERE id = ANY($2::text[]) AND files_purged_at IS NULL"
)
# SKIP LOCKED: the janitors of several replicas take different rows instead of queueing
DELETE_JOBS_BEFORE = f"""
    WITH picked AS MATERIALIZED (
        SELECT seq FROM jobs WHERE completed_at < $1 AND {_FINISHED}
        ORDER BY completed_at LIMIT $2 FOR UPDATE SKIP LOCKED
    )
    DELETE FROM jobs USING picked WHERE jobs.seq = picked.seq RETURNING jobs.id
"""


LOCK_META = "SELECT meta FROM jobs WHERE id = $1 FOR UPDATE"
SET_META = "UPDATE jobs SET meta = $1, updated_at = $2 WHERE id = $3"
SET_PRIORITY = "UPDATE jobs SET priority = $1, updated_at = $2 WHERE id = $3 AND status = 'QUEUED'"
REROUTE_QUEUED = (
    "UPDATE jobs SET model = $1, lane = $2, input = $3, meta = $4, updated_at = $5 "
    "WHERE id = $6 AND status = 'QUEUED' AND updated_at IS NOT DISTINCT FROM $7"
)
DELETE_JOB = f"DELETE FROM jobs WHERE id = $1 AND {_FINISHED} RETURNING id"


def list_jobs_query(
    owner: str | None,
    after: str | None,
    status: Status | None,
    model: str | None,
    limit: int,
    meta: dict[str, str] | None = None,
    kinds: Sequence[str] | None = None,
    offset: int = 0,
    oldest_first: bool = False,
) -> tuple[str, list[Any]]:
    """A page of jobs, newest first (or oldest first); only the filters given become
    predicates (so each combination gets a plan that can use its index). ``meta`` keys are
    checked names."""
    where: list[str] = []
    params: list[Any] = []
    for key, wanted in (meta or {}).items():
        if not META_KEY.match(key):
            raise ValueError(f"not a filterable meta key: {key!r}")
        params.append(wanted)
        where.append(f"meta->>'{key}' = ${len(params)}")
    cursor = (
        "seq > COALESCE((SELECT seq FROM jobs WHERE id = $), 9223372036854775807)"
        if oldest_first
        else "seq < COALESCE((SELECT seq FROM jobs WHERE id = $), -1)"
    )
    for condition, value in (
        ("owner = $", owner),
        (cursor, after),
        ("status = $", None if status is None else status.value),
        ("model = $", model),
    ):
        if value is not None:
            params.append(value)
            where.append(condition.replace("$", f"${len(params)}"))
    if kinds is not None:
        params.append(list(kinds))
        where.append(f"kind = ANY(${len(params)}::text[])")
    clause = ("WHERE " + " AND ".join(where)) if where else ""
    params.extend((limit, max(0, offset)))
    return (
        f"SELECT {JOB_COLUMNS} FROM jobs {clause} ORDER BY seq {'ASC' if oldest_first else 'DESC'} "
        f"LIMIT ${len(params) - 1} OFFSET ${len(params)}",
        params,
    )


GET_META = "SELECT value FROM meta WHERE key = $1"
# DO UPDATE (to the stored value) waits for and returns a row a concurrent insert committed;
# DO NOTHING then SELECT in one statement would not see that row (an older snapshot)
SET_META_IF_ABSENT = (
    "INSERT INTO meta (key, value) VALUES ($1, $2) "
    "ON CONFLICT (key) DO UPDATE SET value = meta.value RETURNING value"
)


def rowcount(tag: str) -> int:
    """The row count of a command tag such as ``UPDATE 3``."""
    return int(tag.rpartition(" ")[2] or 0)


def dumps(value: Any) -> str:
    return orjson.dumps(value).decode()


def job_row(job: Job) -> tuple[Any, ...]:
    """The parameters of ``INSERT_JOB`` for a new job."""
    return (
        job.id,
        job.owner,
        job.kind,
        job.model,
        job.lane,
        job.status.value,
        job.priority,
        job.progress,
        dumps(job.input),
        dump_attempts(job.attempts),
        dumps(job.meta),
        job.created_at,
        job.updated_at,
        job.idempotency_key,
        job.request_hash,
    )
