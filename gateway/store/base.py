"""The JobStore interface: the only thing that touches the database.

The seam is at the repository level (claim, heartbeat, finish, ...), not at the SQL level:
SQLite and PostgreSQL differ too much to share SQL text. Every write that ends or changes an
attempt carries the job's fencing token (``lease_token``): a write from a worker that lost the
job raises ``StaleLease`` (or is ignored, where the docstring says so).
"""

from __future__ import annotations

import logging
import re
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from gateway.jobs import Attempt, Job, Status
from gateway.ratelimit import KeyLimits
from gateway.spend import Budgets, JobSpend, Settlement, Spent, UsageBucket

log = logging.getLogger("backserv.store")

#: the meta keys a listing may filter on are plain names (they become JSON paths in SQL)
META_KEY = re.compile(r"^[a-z][a-z0-9_]{0,39}$")


@dataclass(frozen=True)
class ApiKeyRecord:
    id: str
    name: str
    key_hash: str
    prefix: str
    created_at: float
    revoked_at: float | None = None
    scopes: str = ""
    #: the key's own limits on job creation; None: the gateway's default (settings)
    rate_limit: float | None = None
    rate_burst: int | None = None
    max_active_jobs: int | None = None
    #: the key's budgets, in micros of the catalog's currency (None: no budget)
    budget_daily: int | None = None
    budget_monthly: int | None = None
    budget_total: int | None = None

    @property
    def budgets(self) -> Budgets:
        return Budgets(self.budget_daily, self.budget_monthly, self.budget_total)

    @property
    def limits(self) -> KeyLimits:
        budgets = self.budgets
        return KeyLimits(
            self.rate_limit,
            self.rate_burst,
            self.max_active_jobs,
            budgets if budgets.any else None,
        )


#: the columns of a key ``JobStore.update_key`` may change (the rest never change)
KEY_UPDATABLE = frozenset(
    {
        "name",
        "rate_limit",
        "rate_burst",
        "max_active_jobs",
        "budget_daily",
        "budget_monthly",
        "budget_total",
    }
)


@dataclass(frozen=True)
class WebhookDelivery:
    """One webhook message for one event of one job (a row of the outbox).

    ``id`` (``msg_…``) is the ``webhook-id`` header, the same on every attempt; ``event_key``
    (``started``, ``progress:40``, ``completed``) is unique per job, which makes creating a
    delivery idempotent. ``status`` is ``pending``, ``delivered`` or ``failed``.
    """

    id: str
    job_id: str
    owner: str
    event_key: str
    url: str
    payload: str
    created_at: float
    next_attempt_at: float
    status: str = "pending"
    attempts: int = 0
    last_error: str | None = None
    last_status_code: int | None = None
    delivered_at: float | None = None


@dataclass(frozen=True)
class WebhookSecret:
    owner: str
    secret: str
    created_at: float


class JobStore(ABC):
    def __init__(self) -> None:
        self._change_listeners: list[Callable[[str], None]] = []
        self._delivery_listeners: list[Callable[[str, str, str | None], None]] = []
        self._key_listeners: list[Callable[[str], None]] = []

    def watch_deliveries(self, listener: Callable[[str, str, str | None], None]) -> None:
        """Call ``listener(provider, request_id, state)`` when a provider webhook delivery
        for that request arrived at another replica (``relay_delivery``); ``state`` is the
        text it was relayed with, or None (read the request now)."""
        self._delivery_listeners.append(listener)

    async def relay_delivery(self, provider: str, request_id: str, state: str | None) -> None:
        """Tell the other replicas that a delivery for ``request_id`` arrived here, with its
        ``state`` as text (providers/relay.py) when there is one and it fits the channel
        (else the one following that request reads it now). One process (SQLite) has no
        others."""

    def _delivered(self, provider: str, request_id: str, state: str | None) -> None:
        for listener in self._delivery_listeners:
            try:
                listener(provider, request_id, state)
            except Exception:
                log.exception("a delivery listener failed")

    def watch_changes(self, listener: Callable[[str], None]) -> None:
        """Call ``listener(job_id)`` after every committed change of a job: its status,
        progress, queue position, attempts, priority, input, meta, files, or its deletion
        (on PostgreSQL, also for changes made by other replicas, through one NOTIFY)."""
        self._change_listeners.append(listener)

    def _published(self, job_id: str, changed: bool) -> bool:
        """Tell the listeners about ``job_id`` when ``changed``; return ``changed``."""
        if changed:
            self._changed([job_id])
        return changed

    def _changed(self, job_ids: Iterable[str]) -> None:
        for job_id in job_ids:
            for listener in self._change_listeners:
                try:
                    listener(job_id)
                except Exception:
                    log.exception("a job-change listener failed")

    def watch_keys(self, listener: Callable[[str], None]) -> None:
        """Call ``listener(key_id)`` after every committed change of a stored key (revoked,
        new limits, a new name) made through this store (on PostgreSQL, also by other
        replicas, through one NOTIFY sent in the changing transaction)."""
        self._key_listeners.append(listener)

    def _keys_changed(self, key_id: str) -> None:
        for listener in self._key_listeners:
            try:
                listener(key_id)
            except Exception:
                log.exception("a key-change listener failed")

    async def key_epoch(self) -> int | None:
        """A number that changes whenever a stored key may have changed, wherever the change
        was made; None while that cannot be known (nothing read by key may be kept then).

        What a reader may keep of a stored key (its principal) holds only while the epoch it
        read *before* reading the key is still the current one. The default knows nothing.
        """
        return None

    @abstractmethod
    async def open(self) -> None:
        """Connect and apply pending schema migrations."""

    @abstractmethod
    async def close(self) -> None: ...

    # -- jobs: faces --------------------------------------------------------------------

    @abstractmethod
    async def insert_job(self, job: Job) -> None:
        """Durably store a new QUEUED job before returning (group-committed).

        A job whose ``idempotency_key`` another job of the same owner holds is refused with
        ``DuplicateIdempotencyKey``; the other jobs of its batch are stored all the same.
        """

    @abstractmethod
    async def find_by_idempotency_key(self, owner: str, key: str) -> Job | None:
        """The owner's job created with this ``Idempotency-Key``, if any (one indexed read)."""

    @abstractmethod
    async def get_job(self, job_id: str) -> Job | None: ...

    @abstractmethod
    async def list_jobs(
        self,
        owner: str | None,
        *,
        limit: int,
        after: str | None = None,
        status: Status | None = None,
        model: str | None = None,
        meta: dict[str, str] | None = None,
        kinds: Sequence[str] | None = None,
        offset: int = 0,
        oldest_first: bool = False,
    ) -> tuple[list[Job], bool]:
        """Newest first (``oldest_first``: the other way); ``after`` is the id of the last job
        of the previous page (in the same order); ``meta``
        keeps jobs whose ``meta[key] == value`` for each item (keys match ``META_KEY``);
        ``kinds`` keeps jobs of those kinds; ``offset`` skips that many matching jobs first.

        Returns the page and whether more jobs follow it.
        """

    @abstractmethod
    async def cancel(self, job_id: str) -> Job | None:
        """QUEUED/PROCESSING -> CANCELLED; returns the updated job, or None if it had moved on.

        The cancelled job's ``spend_of`` is recorded in the same transaction (see ``finish``).
        """

    # -- jobs: the scheduler ------------------------------------------------------------

    @abstractmethod
    async def claim(
        self,
        lane: str,
        limit: int,
        worker: str,
        lease_seconds: float,
        *,
        lane_limit: int | None = None,
    ) -> list[Job]:
        """Take up to ``limit`` QUEUED jobs of ``lane`` (priority, then age) and lease them.

        With ``lane_limit``, never let the lane's PROCESSING jobs (every worker's, on every
        replica) exceed it. Each claimed job's ``lease_token`` is incremented: it is the
        fencing token.
        """

    async def claim_lanes(
        self, wants: Mapping[str, tuple[int, int]], worker: str, lease_seconds: float
    ) -> dict[str, list[Job]]:
        """``claim`` for several lanes: ``wants`` maps a lane to (up to how many jobs, the
        lane's limit); the jobs claimed, by lane (a lane with none may be left out).

        By default one ``claim`` after another; a store whose writes queue behind one
        another (SQLite's group commit) claims every lane in one write, so a scheduler
        with many lanes waits for one commit, not one per lane."""
        claimed: dict[str, list[Job]] = {}
        for lane, (limit, lane_limit) in wants.items():
            claimed[lane] = await self.claim(
                lane, limit, worker, lease_seconds, lane_limit=lane_limit
            )
        return claimed

    def subscribe(self, on_work: Callable[[], None], on_cancel: Callable[[str], None]) -> None:
        """Be told when another process queues work or cancels a job (no-op by default:
        the scheduler's periodic claim and the heartbeat notice those anyway)."""

    @abstractmethod
    async def heartbeat(
        self, worker: str, tokens: dict[str, int], lease_seconds: float
    ) -> set[str]:
        """Extend the leases of the jobs ``worker`` holds; return the ids it still holds."""

    @abstractmethod
    async def save_progress(
        self, job_id: str, token: int, progress: int, queue_position: int | None
    ) -> None:
        """Persist progress of a PROCESSING job; ignored when the token is stale."""

    @abstractmethod
    async def save_attempts(
        self,
        job_id: str,
        token: int,
        attempts: list[Attempt],
        *,
        active_only: bool = False,
    ) -> None:
        """Persist the attempt log (provider references first of all); StaleLease if stale.

        With ``active_only`` the job must also still be PROCESSING: used before a submit, so
        a job cancelled in the meantime is never sent to a provider.
        """

    @abstractmethod
    async def finish(
        self,
        job_id: str,
        token: int,
        status: Status,
        *,
        result: dict[str, Any] | None = None,
        error: dict[str, Any] | None = None,
        attempts: list[Attempt] | None = None,
        spend: JobSpend | None = None,
    ) -> None:
        """PROCESSING -> COMPLETED/FAILED; StaleLease if the job moved on or the token is stale.

        ``spend`` (``gateway.spend.spend_of`` the finished job) is recorded in the same
        transaction: its usage rows, and the settlement of its owner's running totals."""

    @abstractmethod
    async def release(self, job_id: str, token: int, attempts: list[Attempt]) -> None:
        """PROCESSING -> QUEUED, keeping the attempt log, so another worker resumes it."""

    @abstractmethod
    async def requeue_expired(self, now: float) -> int:
        """Hand back every PROCESSING job whose lease expired; return how many."""

    @abstractmethod
    async def count_active(self, owner: str) -> int:
        """How many of ``owner``'s jobs are QUEUED or PROCESSING, on every replica (the
        per-key cap on active jobs). Reads a partial index of active jobs by owner."""

    @abstractmethod
    async def count_by_status_and_lane(self) -> dict[tuple[Status, str], int]:
        """How many QUEUED and PROCESSING jobs each lane holds (every worker's, on every
        replica): ``{(status, lane): count}``, with no entry for a count of zero.

        Finished jobs are not counted: they pile up until retention deletes them, and
        counting them would read the table; these two counts read only the partial indexes
        of claims and running jobs. Used by the metrics (cached between scrapes).
        """

    @abstractmethod
    async def recent_latencies(self, limit: int) -> list[tuple[str, float]]:
        """``(model, seconds from created to completed)`` of the ``limit`` jobs of every
        owner that COMPLETED last, newest first: the web catalog's typical latency. Reads
        the partial index of finished jobs by completion time, not the table."""

    # -- retention (the janitor) ------------------------------------------------------------

    @abstractmethod
    async def jobs_with_files_before(self, cutoff: float, limit: int) -> list[str]:
        """Ids of up to ``limit`` finished jobs completed before ``cutoff`` whose files have
        not been purged yet, oldest first."""

    @abstractmethod
    async def mark_files_purged(self, job_ids: list[str], now: float) -> int:
        """Record that these jobs' files are gone (``files_purged_at``); return how many
        were not marked before."""

    @abstractmethod
    async def delete_jobs_before(self, cutoff: float, limit: int) -> list[str]:
        """Delete up to ``limit`` finished jobs completed before ``cutoff``, oldest first;
        return their ids. Jobs that are QUEUED or PROCESSING are never deleted."""

    @abstractmethod
    async def set_meta_value(self, job_id: str, path: tuple[str, ...], value: Any) -> bool:
        """Set ``job.meta[path[0]][path[1]]…`` to ``value`` (JSON) in one atomic write; the
        path's names match ``META_KEY``. False when the job is unknown."""

    @abstractmethod
    async def set_priority(self, job_id: str, priority: int) -> bool:
        """Change a QUEUED job's priority; False when it is unknown or no longer QUEUED."""

    @abstractmethod
    async def reroute_queued(
        self, job: Job, *, model: str, lane: str, input: dict[str, Any], meta: dict[str, Any]
    ) -> bool:
        """Give a QUEUED job another model, lane, input and meta, if nothing changed it since
        ``job`` was read (its ``updated_at``); False when it changed, or is no longer QUEUED."""

    @abstractmethod
    async def delete_job(self, job_id: str) -> bool:
        """Delete one finished job's record; False when it is unknown or not finished."""

    # -- api keys and metadata ----------------------------------------------------------

    @abstractmethod
    async def create_key(self, record: ApiKeyRecord) -> None: ...

    @abstractmethod
    async def find_key(self, key_hash: str) -> ApiKeyRecord | None: ...

    @abstractmethod
    async def list_keys(self) -> list[ApiKeyRecord]: ...

    @abstractmethod
    async def get_key(self, key_id: str) -> ApiKeyRecord | None: ...

    @abstractmethod
    async def revoke_key(self, key_id: str, now: float, *, keep_an_admin: bool = False) -> bool:
        """Mark the key revoked; False when it is unknown or already revoked.

        With ``keep_an_admin``, refuse (``LastAdminKey``) to revoke the last active key with
        the ``admin`` scope. The check and the write are one transaction that no concurrent
        revocation can interleave with: two admins revoking each other at once leave one.
        """

    @abstractmethod
    async def update_key(self, key_id: str, changes: dict[str, Any]) -> ApiKeyRecord | None:
        """Set the given columns (names from ``KEY_UPDATABLE``) of a key that is not revoked,
        in one write; return the updated key, or None when it is unknown or revoked."""

    # -- spend: budgets and the usage ledger (gateway/spend.py) ------------------------------

    @abstractmethod
    async def charge_budget(
        self, owner: str, amount: int, budgets: Budgets, day: str, month: str
    ) -> Spent | None:
        """Reserve ``amount`` micros against ``owner``'s running totals for ``day`` and
        ``month`` (UTC) unless that would take one of them past its budget, in one atomic
        write (on PostgreSQL one statement, the row lock serialising replicas). None when
        reserved; the totals as they stand when refused (nothing is reserved)."""

    @abstractmethod
    async def settle(self, settlement: Settlement) -> None:
        """Apply one settlement alone (a reservation handed back: a submit that stored
        no job)."""

    @abstractmethod
    async def spent(self, owner: str, day: str, month: str) -> Spent:
        """``owner``'s running totals for ``day`` and ``month`` (0 for another period)."""

    @abstractmethod
    async def usage(self, owner: str | None, start_day: str, end_day: str) -> list[UsageBucket]:
        """The usage ledger summed by owner, day, model and provider, for days from
        ``start_day`` to ``end_day`` (inclusive, ``YYYY-MM-DD``); every owner's with None."""

    # -- per-key rate limits shared by replicas (gateway/ratelimit.py) -------------------

    #: True when several gateway processes share this store, so per-key token buckets must
    #: live in it (``take_rate_token``); a store one process owns (SQLite) leaves them to
    #: that process
    shares_rate_limits = False

    async def take_rate_token(self, bucket: str, rate: float, burst: int) -> float:
        """Take one token from ``bucket`` (refilled at ``rate`` per second up to ``burst``,
        by the database's clock) in one atomic statement. Return 0.0 when a token was
        taken, else the seconds until the next one arrives (nothing is taken)."""
        raise NotImplementedError(f"{type(self).__name__} keeps no rate-limit buckets")

    @abstractmethod
    async def get_meta(self, key: str) -> str | None: ...

    @abstractmethod
    async def set_meta_if_absent(self, key: str, value: str) -> str:
        """Store ``value`` unless the key exists; return whichever value is stored."""

    # -- webhooks (gateway/webhooks/): the outbox of deliveries, and each owner's secret -----

    @abstractmethod
    async def create_delivery(self, delivery: WebhookDelivery) -> bool:
        """Store a pending delivery unless its job already has one with its ``event_key``;
        True if this call stored it."""

    @abstractmethod
    async def claim_due_deliveries(
        self, now: float, limit: int, lease: float
    ) -> list[WebhookDelivery]:
        """Take up to ``limit`` pending deliveries due by ``now`` (oldest due first) and push
        their ``next_attempt_at`` to ``now + lease``, so no other sender takes them meanwhile."""

    @abstractmethod
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
        """Record attempt number ``attempt`` (``attempts`` becomes it) and the new ``status``;
        fenced: ignored (False) unless the delivery is pending with ``attempt - 1`` attempts."""

    @abstractmethod
    async def deliveries_for_job(self, job_id: str) -> list[WebhookDelivery]:
        """The job's deliveries, in the order they were created."""

    async def hooked_jobs(self, job_ids: Sequence[str]) -> set[str]:
        """Those of ``job_ids`` whose job has a webhook (``meta.webhook.url`` a string); a
        job that does not exist is left out. Stores answer it in one query (the webhook
        dispatcher asks it of every batch of changed jobs, most of which have none)."""
        found = set()
        for job_id in job_ids:
            job = await self.get_job(job_id)
            hook = job.meta.get("webhook") if job is not None else None
            if isinstance(hook, dict) and isinstance(hook.get("url"), str):
                found.add(job_id)
        return found

    @abstractmethod
    async def jobs_missing_completed_delivery(self, since: float, limit: int) -> list[str]:
        """Ids of up to ``limit`` jobs with a webhook (``meta.webhook``) subscribed to
        ``completed`` (or to no event list: the default) that finished at or after ``since``
        and have no ``completed`` delivery yet, the earliest finished first."""

    @abstractmethod
    async def purge_deliveries_before(self, cutoff: float, limit: int) -> int:
        """Delete up to ``limit`` delivered or failed deliveries created before ``cutoff``."""

    @abstractmethod
    async def get_or_create_webhook_secret(self, owner: str) -> WebhookSecret:
        """The owner's signing secret (``whsec_…``), created on first use."""

    @abstractmethod
    async def rotate_webhook_secret(self, owner: str) -> WebhookSecret:
        """Replace the owner's secret with a new one and return it."""
