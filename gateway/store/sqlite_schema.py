"""SQLite schema migrations, applied in order at start-up (``PRAGMA user_version`` = applied)."""

from __future__ import annotations

MIGRATIONS: tuple[str, ...] = (
    # 1: jobs, api keys, metadata
    """
    CREATE TABLE jobs (
        seq            INTEGER PRIMARY KEY,
        id             TEXT NOT NULL UNIQUE,
        owner          TEXT NOT NULL,
        kind           TEXT NOT NULL,
        model          TEXT NOT NULL,
        lane           TEXT NOT NULL,
        status         TEXT NOT NULL,
        priority       INTEGER NOT NULL DEFAULT 0,
        progress       INTEGER NOT NULL DEFAULT 0,
        queue_position INTEGER,
        input          TEXT NOT NULL,
        result         TEXT,
        error          TEXT,
        attempts       TEXT NOT NULL DEFAULT '[]',
        meta           TEXT NOT NULL DEFAULT '{}',
        created_at     REAL NOT NULL,
        updated_at     REAL,
        started_at     REAL,
        completed_at   REAL,
        lease_token    INTEGER NOT NULL DEFAULT 0,
        lease_owner    TEXT,
        lease_expires  REAL
    );
    CREATE INDEX jobs_owner_seq ON jobs (owner, seq);
    CREATE INDEX jobs_claim ON jobs (lane, priority DESC, seq) WHERE status = 'QUEUED';
    CREATE INDEX jobs_lease ON jobs (lease_expires) WHERE status = 'PROCESSING';

    CREATE TABLE api_keys (
        id          TEXT PRIMARY KEY,
        name        TEXT NOT NULL,
        key_hash    TEXT NOT NULL UNIQUE,
        prefix      TEXT NOT NULL,
        scopes      TEXT NOT NULL DEFAULT '',
        created_at  REAL NOT NULL,
        revoked_at  REAL
    );

    CREATE TABLE meta (
        key   TEXT PRIMARY KEY,
        value TEXT NOT NULL
    );
    """,
    # 2: counting a lane's running jobs (concurrency limits that hold across processes)
    """
    CREATE INDEX jobs_lane_running ON jobs (lane) WHERE status = 'PROCESSING';
    """,
    # 3: idempotency keys, unique per owner, in the job's own row (one insert holds both)
    """
    ALTER TABLE jobs ADD COLUMN idempotency_key TEXT;
    ALTER TABLE jobs ADD COLUMN request_hash TEXT;
    CREATE UNIQUE INDEX jobs_owner_idempotency_key ON jobs (owner, idempotency_key)
        WHERE idempotency_key IS NOT NULL;
    """,
    # 4: retention: finished jobs whose files are due, and finished jobs by age. Both are
    # partial on completed_at, so a new (unfinished) job's insert touches neither.
    """
    ALTER TABLE jobs ADD COLUMN files_purged_at REAL;
    CREATE INDEX jobs_files_due ON jobs (completed_at)
        WHERE files_purged_at IS NULL AND completed_at IS NOT NULL;
    CREATE INDEX jobs_finished ON jobs (completed_at) WHERE completed_at IS NOT NULL;
    """,
    # 5: webhooks: the outbox of deliveries (one per job and event: the unique index makes
    # creating one idempotent), and each owner's signing secret
    """
    CREATE TABLE webhook_deliveries (
        seq              INTEGER PRIMARY KEY,
        id               TEXT NOT NULL UNIQUE,
        job_id           TEXT NOT NULL,
        owner            TEXT NOT NULL,
        event_key        TEXT NOT NULL,
        url              TEXT NOT NULL,
        payload          TEXT NOT NULL,
        status           TEXT NOT NULL DEFAULT 'pending',
        attempts         INTEGER NOT NULL DEFAULT 0,
        next_attempt_at  REAL NOT NULL,
        last_error       TEXT,
        last_status_code INTEGER,
        created_at       REAL NOT NULL,
        delivered_at     REAL
    );
    CREATE UNIQUE INDEX webhook_deliveries_job_event ON webhook_deliveries (job_id, event_key);
    CREATE INDEX webhook_deliveries_due ON webhook_deliveries (next_attempt_at)
        WHERE status = 'pending';
    CREATE INDEX webhook_deliveries_created ON webhook_deliveries (created_at);

    CREATE TABLE webhook_secrets (
        owner      TEXT PRIMARY KEY,
        secret     TEXT NOT NULL,
        created_at REAL NOT NULL
    );
    """,
    # per-key cap on active jobs (BACKSERV_MAX_ACTIVE_JOBS_PER_KEY): count an owner's
    # QUEUED and PROCESSING jobs from a partial index that holds only those
    """
    CREATE INDEX jobs_owner_active ON jobs (owner)
        WHERE status IN ('QUEUED', 'PROCESSING');
    """,
    # 7: each key's own limits on job creation (NULL: the settings' default)
    """
    ALTER TABLE api_keys ADD COLUMN rate_limit REAL;
    ALTER TABLE api_keys ADD COLUMN rate_burst INTEGER;
    ALTER TABLE api_keys ADD COLUMN max_active_jobs INTEGER;
    """,
    # 8: spend (gateway/spend.py): each key's budgets (micros; NULL: none), its running
    # totals (one row per key), and the usage ledger (one row per priced attempt, kept when
    # retention deletes the job)
    """
    ALTER TABLE api_keys ADD COLUMN budget_daily INTEGER;
    ALTER TABLE api_keys ADD COLUMN budget_monthly INTEGER;
    ALTER TABLE api_keys ADD COLUMN budget_total INTEGER;
    CREATE TABLE key_spend (
        owner       TEXT PRIMARY KEY,
        day         TEXT NOT NULL,
        day_spent   INTEGER NOT NULL,
        month       TEXT NOT NULL,
        month_spent INTEGER NOT NULL,
        total_spent INTEGER NOT NULL
    );
    CREATE TABLE usage (
        job_id   TEXT NOT NULL,
        n        INTEGER NOT NULL,
        owner    TEXT NOT NULL,
        model    TEXT NOT NULL,
        provider TEXT NOT NULL,
        day      TEXT NOT NULL,
        cost     INTEGER NOT NULL,
        PRIMARY KEY (job_id, n)
    );
    CREATE INDEX usage_day ON usage (day, owner);
    """,
    # 9: an epoch of the stored keys, bumped in the transaction of every change of a key by
    # whoever makes it (the gateway, ``backserv keys`` in another process, an operator's
    # sqlite3 shell): the gateway keeps keys it read only while the epoch it saw holds
    """
    CREATE TABLE key_epoch (
        id    INTEGER PRIMARY KEY CHECK (id = 1),
        epoch INTEGER NOT NULL
    );
    INSERT INTO key_epoch (id, epoch) VALUES (1, 0);
    CREATE TRIGGER api_keys_updated AFTER UPDATE ON api_keys
    BEGIN
        UPDATE key_epoch SET epoch = epoch + 1 WHERE id = 1;
    END;
    CREATE TRIGGER api_keys_deleted AFTER DELETE ON api_keys
    BEGIN
        UPDATE key_epoch SET epoch = epoch + 1 WHERE id = 1;
    END;
    """,
)
