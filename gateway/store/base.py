"""The JobStore interface: the only thing that touches the database.

The seam is at the repository level (claim, heartbeat, finish, ...), not at the SQL level:
SQLite and PostgreSQL differ too much to share SQL text. Every write that ends or changes an
attempt carries the job's fencing token (``lease_token``): a write from a worker that lost the
job raises ``StaleLease`` (or is ignored, where the docstring says so).
"""

from __future__ import annotations

import logging
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from gateway.jobs import Job, Status

log = logging.getLogger("backserv.store")


@dataclass(frozen=True)
class ApiKeyRecord:
    id: str
    name: str
    key_hash: str
    prefix: str
    created_at: float
    revoked_at: float | None = None
    scopes: str = ""


class JobStore(ABC):
    def __init__(self) -> None:
        self._change_listeners: list[Callable[[str], None]] = []

    def watch_changes(self, listener: Callable[[str], None]) -> None:
        """Call ``listener(job_id)`` after every committed change of a job's status, progress
        or queue position (on PostgreSQL, also for changes made by other replicas)."""
        self._change_listeners.append(listener)

    def _changed(self, job_ids: Iterable[str]) -> None:
        for job_id in job_ids:
            for listener in self._change_listeners:
                try:
                    listener(job_id)
                except Exception:
                    log.exception("a job-change listener failed")

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
    ) -> tuple[list[Job], bool]:
        """Newest first; ``after`` is the id of the last job of the previous page.

        Returns the page and whether more jobs follow it.
        """

    @abstractmethod
    async def cancel(self, job_id: str) -> Job | None:
        """QUEUED/PROCESSING -> CANCELLED; returns the updated job, or None if it had moved on."""

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
        attempts: list[dict[str, Any]],
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
        attempts: list[dict[str, Any]] | None = None,
    ) -> None:
        """PROCESSING -> COMPLETED/FAILED; StaleLease if the job moved on or the token is stale."""

    @abstractmethod
    async def release(self, job_id: str, token: int, attempts: list[dict[str, Any]]) -> None:
        """PROCESSING -> QUEUED, keeping the attempt log, so another worker resumes it."""

    @abstractmethod
    async def requeue_expired(self, now: float) -> int:
        """Hand back every PROCESSING job whose lease expired; return how many."""

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

    # -- api keys and metadata ----------------------------------------------------------

    @abstractmethod
    async def create_key(self, record: ApiKeyRecord) -> None: ...

    @abstractmethod
    async def find_key(self, key_hash: str) -> ApiKeyRecord | None: ...

    @abstractmethod
    async def list_keys(self) -> list[ApiKeyRecord]: ...

    @abstractmethod
    async def revoke_key(self, key_id: str, now: float) -> bool: ...

    @abstractmethod
    async def get_meta(self, key: str) -> str | None: ...

    @abstractmethod
    async def set_meta_if_absent(self, key: str, value: str) -> str:
        """Store ``value`` unless the key exists; return whichever value is stored."""
