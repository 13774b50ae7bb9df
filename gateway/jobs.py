"""Jobs: the record, its statuses and their legal transitions, and the service faces call."""

from __future__ import annotations

import secrets
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import TYPE_CHECKING, Any, Protocol

from gateway.errors import (
    Conflict,
    DuplicateIdempotencyKey,
    IdempotencyKeyReused,
    InvalidRequest,
    NotFound,
    RateLimited,
)
from gateway.inline_media import DEFAULT_MAX_INPUT_BYTES
from gateway.metrics_hooks import JobObserver
from gateway.ratelimit import Limits

if TYPE_CHECKING:
    from gateway.availability import Availability
    from gateway.catalog import Catalog, CatalogModel
    from gateway.ratelimit import KeyLimits, RateLimiter
    from gateway.store.base import JobStore
    from providers.base import RouteSpec


class Status(StrEnum):
    QUEUED = "QUEUED"
    PROCESSING = "PROCESSING"
    COMPLETED = "COMPLETED"
    FAILED = "FAILED"
    CANCELLED = "CANCELLED"

    @property
    def terminal(self) -> bool:
        return self in TERMINAL


TERMINAL = frozenset({Status.COMPLETED, Status.FAILED, Status.CANCELLED})

#: The one transition table. PROCESSING -> QUEUED is a hand-back: a lease that expired, or a
#: worker that shut down, returns the job so another worker resumes it.
TRANSITIONS: dict[Status, frozenset[Status]] = {
    Status.QUEUED: frozenset({Status.PROCESSING, Status.CANCELLED}),
    Status.PROCESSING: frozenset(
        {Status.COMPLETED, Status.FAILED, Status.CANCELLED, Status.QUEUED}
    ),
    Status.COMPLETED: frozenset(),
    Status.FAILED: frozenset(),
    Status.CANCELLED: frozenset(),
}


def sources_of(target: Status) -> tuple[Status, ...]:
    """Every status from which ``target`` may be reached (used in conditional updates)."""
    return tuple(s for s, nexts in TRANSITIONS.items() if target in nexts)


def check_transition(current: Status, target: Status, job_id: str) -> None:
    if target not in TRANSITIONS[current]:
        if current.terminal:
            raise Conflict(
                f"Job {job_id} is already {current.value}; it cannot become {target.value}.",
                code="job_already_finished",
            )
        raise Conflict(
            f"Job {job_id} cannot go from {current.value} to {target.value}.",
            code="illegal_transition",
        )


def new_job_id() -> str:
    """``job-`` and 96 bits from the OS's CSPRNG, in hex. Not from ``random``: a Mersenne
    Twister's state, and with it every id to come, follows from 208 of its 96-bit outputs,
    so one key's ids would tell the ids of every other key's next jobs. (About 1 us per id,
    0.7 us more than the Twister: nothing beside a submit's store write.)"""
    return f"job-{secrets.token_hex(12)}"


@dataclass
class Job:
    id: str
    owner: str
    kind: str
    model: str
    input: dict[str, Any]
    lane: str
    status: Status = Status.QUEUED
    priority: int = 0
    progress: int = 0
    queue_position: int | None = None
    created_at: float = field(default_factory=time.time)
    updated_at: float | None = None
    started_at: float | None = None
    completed_at: float | None = None
    result: dict[str, Any] | None = None
    error: dict[str, Any] | None = None
    attempts: list[dict[str, Any]] = field(default_factory=list)
    meta: dict[str, Any] = field(default_factory=dict)
    #: fencing token: bumped at every claim; writes that finish an attempt must carry it
    lease_token: int = 0
    lease_owner: str | None = None
    lease_expires: float | None = None
    #: the client's ``Idempotency-Key`` (unique per owner) and the hash of the request it
    #: came with; stored in the job's own row, so the job and its key are one insert
    idempotency_key: str | None = None
    request_hash: str | None = None
    #: when the retention janitor deleted the job's result files (None: not yet)
    files_purged_at: float | None = None

    @property
    def provider(self) -> str | None:
        return self.attempts[-1]["provider"] if self.attempts else None

    @property
    def retry_count(self) -> int:
        return max(0, len(self.attempts) - 1)

    @property
    def fallback_used(self) -> bool:
        return any(a.get("route_index", 0) > 0 for a in self.attempts)


def _replay(existing: Job, request_hash: str | None) -> Job:
    """``existing`` if it was created by the same request, else ``IdempotencyKeyReused``."""
    if existing.request_hash != request_hash:
        raise IdempotencyKeyReused(
            f"The Idempotency-Key '{existing.idempotency_key}' was already used with a "
            f"different request (it created job {existing.id}); use a new key for a new request."
        )
    return existing


class Waker(Protocol):
    def wake(self) -> None: ...

    def job_cancelled(self, job_id: str) -> None: ...


#: the Retry-After of a submit refused by the active-jobs cap (when a job ends is unknown)
ACTIVE_RETRY_AFTER = 5.0


class JobService:
    """What every face calls: submit, read, list and cancel jobs."""

    def __init__(
        self,
        store: JobStore,
        catalog: Catalog,
        waker: Waker | None = None,
        availability: Availability | None = None,
        limiter: RateLimiter | None = None,
        observer: JobObserver | None = None,
        limits: Limits | None = None,
        max_input_bytes: int = DEFAULT_MAX_INPUT_BYTES,
    ) -> None:
        self.observer = observer or JobObserver()
        #: the per-key token buckets (None: no rate limit at all)
        self.limiter = limiter
        #: every key's limits unless the key sets its own: the rate limit, and the most
        #: QUEUED + PROCESSING jobs one owner may have (0: no cap)
        self.limits = limits or Limits()
        #: the most bytes an inline (data: URL or base64) input image may decode to
        self.max_input_bytes = max_input_bytes
        self.store = store
        self.catalog = catalog
        self.waker = waker
        self.availability = availability

    def resolve(self, model_id: Any, kind: str | None = None) -> CatalogModel:
        if model_id is None or model_id == "":
            raise InvalidRequest(
                "Missing required parameter 'model'.", param="model", code="missing_parameter"
            )
        if not isinstance(model_id, str):
            raise InvalidRequest(
                "Invalid 'model': must be a string (a model id).",
                param="model",
                code="invalid_type",
            )
        model = self.catalog.get(model_id)
        if kind is not None and model.kind.name != kind:
            raise InvalidRequest(
                f"The model '{model.id}' is a {model.kind.name} model, not {kind}; submit it "
                f"with POST /v1/jobs and its {model.kind.name} input.",
                param="model",
                code="wrong_model_kind",
            )
        return model

    async def _check_active(self, owner: str, cap: int, own: bool) -> None:
        """``RateLimited`` (429) when ``owner`` already has ``cap`` unfinished jobs.

        Counted in the store, so the cap holds across replicas. Submits that race each other
        past the count may each get in: the cap can be passed by the submits of one key that
        are in flight at the same moment (no more than its rate limit's burst, when it has
        one). It is a guard rail on spending, not an exact quota."""
        active = await self.store.count_active(owner)
        if active >= cap:
            source = "this key's max_active_jobs" if own else "BACKSERV_MAX_ACTIVE_JOBS_PER_KEY"
            raise RateLimited(
                f"Too many active jobs: this API key already has {active} queued or processing "
                f"job(s); the limit is {cap} ({source}). Wait for some to finish, or cancel "
                f"some, and retry.",
                retry_after=ACTIVE_RETRY_AFTER,
                code="too_many_active_jobs",
            )

    async def submit(
        self,
        *,
        owner: str,
        model: CatalogModel,
        raw_input: Any,
        priority: int = 0,
        meta: dict[str, Any] | None = None,
        param_prefix: str = "",
        limits: KeyLimits | None = None,
    ) -> Job:
        """Validate and store a new QUEUED job, and wake the scheduler."""
        job, _ = await self.submit_or_replay(
            owner=owner,
            model=model,
            raw_input=raw_input,
            priority=priority,
            meta=meta,
            param_prefix=param_prefix,
            limits=limits,
        )
        return job

    async def submit_or_replay(
        self,
        *,
        owner: str,
        model: CatalogModel,
        raw_input: Any,
        priority: int = 0,
        meta: dict[str, Any] | None = None,
        param_prefix: str = "",
        idempotency_key: str | None = None,
        request_hash: str | None = None,
        routes: Sequence[RouteSpec] | None = None,
        limits: KeyLimits | None = None,
    ) -> tuple[Job, bool]:
        """``submit``, honouring an idempotency key; returns ``(job, replayed)``.

        ``limits`` are the submitting key's own limits (its ``Principal.limits``): they
        override the gateway's defaults for this key's rate limit and active-jobs cap.

        Without a key this is ``submit``. With one, the owner's job that already holds the
        key is returned (``replayed``) when it came with the same ``request_hash``, and a
        different hash is ``IdempotencyKeyReused`` (422). A twin request that inserts first
        makes our insert fail on the unique index; we then replay the twin's job, so
        concurrent requests with one key create one job.
        """
        own = self.limits.apply(limits)
        if self.limiter is not None and own.rate > 0:
            await self.limiter.take(owner, own.rate, own.burst)
        if idempotency_key is not None:
            existing = await self.store.find_by_idempotency_key(owner, idempotency_key)
            if existing is not None:
                return _replay(existing, request_hash), True
        if own.max_active > 0:  # a replay above creates nothing: never refused by the cap
            mine = limits is not None and limits.max_active_jobs is not None
            await self._check_active(owner, own.max_active, mine)
        meta = dict(meta or {})
        listed = self.catalog.models.get(model.id)
        if routes is None and listed is not None and listed.routes != model.routes:
            routes = model.routes  # a face composed this model's chain for this job
        if routes:  # a per-job route chain, persisted with the job for whoever runs it
            model = model.with_routes(routes)
            meta["routes"] = [r.to_dict() for r in routes]
        if self.availability is not None:
            self.availability.require_configured(model)
        job = Job(
            id=new_job_id(),
            owner=owner,
            kind=model.kind.name,
            model=model.id,
            input=model.validate_input(
                raw_input, param_prefix, max_input_bytes=self.max_input_bytes
            ),
            lane=model.lane,
            priority=priority,
            meta=meta,
            idempotency_key=idempotency_key,
            request_hash=request_hash if idempotency_key is not None else None,
        )
        job.updated_at = job.created_at
        try:
            await self.store.insert_job(job)
        except DuplicateIdempotencyKey:
            if idempotency_key is None:  # only a keyed job can collide on its key
                raise
            existing = await self.store.find_by_idempotency_key(owner, idempotency_key)
            if existing is None:  # the twin was purged in between: vanishingly rare
                raise Conflict(
                    "A request with this Idempotency-Key was being processed; try again.",
                    code="idempotency_key_in_use",
                ) from None
            return _replay(existing, request_hash), True
        self.observer.job_submitted(job)
        if self.waker is not None:
            self.waker.wake()
        return job, False

    async def get(self, owner: str | None, job_id: str) -> Job:
        """``owner=None`` reads any job (admin); otherwise another owner's job is a 404."""
        job = await self.store.get_job(job_id)
        if job is None or (owner is not None and job.owner != owner):
            raise NotFound(f"No job with id '{job_id}'.", param="id", code="job_not_found")
        return job

    async def list(
        self,
        owner: str | None,
        *,
        limit: int,
        after: str | None,
        status: Status | None,
        model: str | None,
        meta: dict[str, str] | None = None,
        kinds: Sequence[str] | None = None,
        offset: int = 0,
    ) -> tuple[list[Job], bool]:
        if after is not None:
            cursor = await self.store.get_job(after)
            if cursor is None or (owner is not None and cursor.owner != owner):
                raise InvalidRequest(
                    "Invalid 'after': it must be the id of one of your jobs (the last id of "
                    "the previous page).",
                    param="after",
                    code="invalid_cursor",
                )
        return await self.store.list_jobs(
            owner,
            limit=limit,
            after=after,
            status=status,
            model=model,
            meta=meta,
            kinds=kinds,
            offset=offset,
        )

    async def annotate(
        self, owner: str | None, job_id: str, path: tuple[str, ...], value: Any
    ) -> Job:
        """Set a client-owned value in the job's ``meta`` (a face's extra fields)."""
        await self.get(owner, job_id)
        if not await self.store.set_meta_value(job_id, path, value):
            raise NotFound(f"No job with id '{job_id}'.", param="id", code="job_not_found")
        return await self.get(owner, job_id)

    async def set_priority(self, owner: str | None, job_id: str, priority: int) -> Job:
        """Reorder a job that still waits; a job already running or done is a 409."""
        job = await self.get(owner, job_id)
        if not await self.store.set_priority(job_id, priority):
            latest = await self.get(owner, job_id)
            raise Conflict(
                f"Job {job_id} is {latest.status.value}; only a QUEUED job's priority can change.",
                code="job_not_queued",
            )
        return await self.get(owner, job.id)

    async def reroute(
        self, owner: str | None, job: Job, model: CatalogModel, raw_input: Any, meta: dict[str, Any]
    ) -> Job:
        """Run a job that still waits on another model or route chain, with another input
        (a face's update of what the job runs). ``job`` is the job as the caller read it: if
        anything changed it since, or it left QUEUED, nothing is changed and it is a 409."""
        meta = {key: value for key, value in meta.items() if key != "routes"}
        listed = self.catalog.models.get(model.id)
        if listed is None or listed.routes != model.routes:
            meta["routes"] = [r.to_dict() for r in model.routes]
        if self.availability is not None:
            self.availability.require_configured(model)
        new_input = model.validate_input(raw_input)
        if not await self.store.reroute_queued(
            job, model=model.id, lane=model.lane, input=new_input, meta=meta
        ):
            latest = await self.get(owner, job.id)
            if latest.status is Status.QUEUED:
                raise Conflict(
                    f"Job {job.id} changed while this update was made; read it again and retry.",
                    code="job_changed",
                )
            raise Conflict(
                f"Job {job.id} is {latest.status.value}; only a QUEUED job can change what it "
                "runs.",
                code="job_not_queued",
            )
        if self.waker is not None:
            self.waker.wake()
        return await self.get(owner, job.id)

    async def delete(self, owner: str | None, job_id: str) -> Job:
        """Remove a finished job's record (its files are the caller's to delete first)."""
        job = await self.get(owner, job_id)
        if not job.status.terminal:
            raise Conflict(
                f"Job {job_id} is {job.status.value}; cancel it before deleting it.",
                code="job_not_finished",
            )
        if not await self.store.delete_job(job_id):
            raise NotFound(f"No job with id '{job_id}'.", param="id", code="job_not_found")
        return job

    async def cancel(self, owner: str | None, job_id: str) -> Job:
        current = await self.get(owner, job_id)
        check_transition(current.status, Status.CANCELLED, job_id)
        job = await self.store.cancel(job_id)
        if job is None:  # it finished between our read and our write
            latest = await self.get(owner, job_id)
            check_transition(latest.status, Status.CANCELLED, job_id)
            raise Conflict(f"Job {job_id} changed while it was being cancelled; try again.")
        self.observer.job_finished(job, Status.CANCELLED)
        if self.waker is not None:
            self.waker.job_cancelled(job_id)
        return job
