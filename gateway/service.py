"""The one door to jobs: ``JobRequest`` and ``JobService``.

Every face (Jobs API, OpenAI, Back.Serv task API, Tasks API, the web pages) and the CLI turn
their wire format into a ``JobRequest`` and call ``JobService``: submit (with idempotent
replay, webhook checks, per-key limits), get, list, wait, cancel, reroute, set priority,
delete. Nothing but the service writes a job on a face's behalf.
"""

from __future__ import annotations

import builtins
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from gateway.errors import (
    Conflict,
    DuplicateIdempotencyKey,
    IdempotencyKeyReused,
    InvalidRequest,
    NotFound,
    PermissionDenied,
    QuotaExceeded,
    RateLimited,
)
from gateway.idempotency import Idempotency
from gateway.inline_media import DEFAULT_MAX_INPUT_BYTES
from gateway.jobs import Job, Status, check_transition, new_job_id
from gateway.netguard import AllowList
from gateway.observability.observer import JobObserver
from gateway.pricing import estimate, money
from gateway.ratelimit import KeyLimits, Limits, RateLimiter
from gateway.scheduler.choice import rank_routes
from gateway.spend import Budgets, Settlement, Spent, day_and_month
from gateway.webhooks.validate import validate_webhook
from gateway.webhooks.view import job_webhook

if TYPE_CHECKING:
    from gateway.catalog import Catalog, CatalogModel
    from gateway.scheduler.availability import Availability
    from gateway.storage import ResultStorage
    from gateway.store.base import JobStore
    from providers.base import RouteSpec


@dataclass(frozen=True, slots=True)
class JobRequest:
    """A request for one job, as a face or the CLI states it.

    ``input`` is the raw input of the model's kind (validated by the service, errors naming
    ``param_prefix`` + the field); ``webhook_url`` / ``webhook_events`` are the request's raw
    values (checked by the service, SSRF guard included); ``limits`` are the submitting key's
    own limits; ``routes`` a route chain composed for this job; ``meta`` a face's own fields.
    ``job_id`` is an id the face chose (``new_job_id()``) because it stored files under it
    before the job existed (uploads); ``webhook_format`` is how the job's webhooks are
    worded (``gateway/webhooks/due.py``: ``"backserv"`` or ``"openai"``).
    """

    owner: str
    model: CatalogModel
    input: Any
    limits: KeyLimits | None = None
    priority: int = 0
    idempotency: Idempotency | None = None
    webhook_url: Any = None
    webhook_events: Any = None
    routes: Sequence[RouteSpec] | None = None
    meta: Mapping[str, Any] | None = None
    param_prefix: str = ""
    job_id: str | None = None
    webhook_format: str = "backserv"


def _replay(existing: Job, request_hash: str | None) -> Job:
    """``existing`` if it was created by the same request, else ``IdempotencyKeyReused``."""
    if existing.request_hash != request_hash:
        raise IdempotencyKeyReused(
            f"The Idempotency-Key '{existing.idempotency_key}' was already used with a "
            f"different request (it created job {existing.id}); use a new key for a new request."
        )
    return existing


def _over_budget(budgets: Budgets, spent: Spent, cost: int, currency: str) -> QuotaExceeded:
    """The refusal of a submit that would cross a budget, naming the first it would cross."""
    crossed: list[tuple[str, int | None, int]] = [
        (period, budget, so_far)
        for period, budget, so_far in (
            ("daily", budgets.daily, spent.daily),
            ("monthly", budgets.monthly, spent.monthly),
            ("total", budgets.total, spent.total),
        )
        if budget is not None and so_far + cost > budget
    ]
    # none: a job settled in between, freeing some; the refusal stands, named by the total
    period, budget, so_far = (crossed or [("total", budgets.total, spent.total)])[0]
    return QuotaExceeded(
        f"You exceeded your current quota: this job's estimated cost "
        f"{money(cost):g} {currency} would take this API key past its {period} budget of "
        f"{money(budget or 0):g} {currency} ({money(so_far):g} {currency} spent or reserved). "
        "Jobs already accepted run to the end; ask an admin to raise the budget."
    )


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
        webhook_allow: AllowList | None = None,
        storage: ResultStorage | None = None,
    ) -> None:
        #: the jobs' result files (None: a service that never purges files, in tests)
        self.storage = storage
        #: the holes in the SSRF guard for webhook targets (BACKSERV_WEBHOOK_ALLOW)
        self.webhook_allow = webhook_allow or AllowList()
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

    async def submit(self, request: JobRequest) -> tuple[Job, bool]:
        """Validate and store a new QUEUED job and wake the scheduler; ``(job, replayed)``.

        The request's key ``limits`` override the gateway's defaults for that key's rate
        limit and active-jobs cap.

        With an ``idempotency`` key, the owner's job that already holds the key is returned
        (``replayed``) when it came with the same request hash, and a different hash is
        ``IdempotencyKeyReused`` (422). A twin request that inserts first makes our insert
        fail on the unique index; we then replay the twin's job, so concurrent requests with
        one key create one job.
        """
        hook = await validate_webhook(
            request.webhook_url, request.webhook_events, self.webhook_allow
        )
        owner, limits, idem = request.owner, request.limits, request.idempotency
        own = self.limits.apply(limits)
        if self.limiter is not None and own.rate > 0:
            await self.limiter.take(owner, own.rate, own.burst)
        if idem is not None:
            existing = await self.store.find_by_idempotency_key(owner, idem.key)
            if existing is not None:
                return _replay(existing, idem.request_hash), True
        if own.max_active > 0:  # a replay above creates nothing: never refused by the cap
            mine = limits is not None and limits.max_active_jobs is not None
            await self._check_active(owner, own.max_active, mine)
        meta = dict(request.meta or {})
        if hook is not None:
            if request.webhook_format != "backserv":
                hook["format"] = request.webhook_format
            meta["webhook"] = hook
        model, routes = request.model, request.routes
        listed = self.catalog.models.get(model.id)
        if routes is None and listed is not None and listed.routes != model.routes:
            routes = model.routes  # a face composed this model's chain for this job
        if routes:  # a per-job route chain, persisted with the job for whoever runs it
            model = model.with_routes(routes)
            meta["routes"] = [r.to_dict() for r in routes]
        if self.availability is not None:
            self.availability.require_configured(model)
        job = Job(
            id=request.job_id or new_job_id(),
            owner=owner,
            kind=model.kind.name,
            model=model.id,
            input=model.validate_input(
                request.input, request.param_prefix, max_input_bytes=self.max_input_bytes
            ),
            lane=model.lane,
            priority=request.priority,
            meta=meta,
            idempotency_key=None if idem is None else idem.key,
            request_hash=None if idem is None else idem.request_hash,
        )
        job.updated_at = job.created_at
        budgets = None if limits is None else limits.budgets
        await self._price(job, model, budgets)
        try:
            await self.store.insert_job(job)
        except DuplicateIdempotencyKey:
            await self._hand_back(job)
            if idem is None:  # only a keyed job can collide on its key
                raise
            existing = await self.store.find_by_idempotency_key(owner, idem.key)
            if existing is None:  # the twin was purged in between: vanishingly rare
                raise Conflict(
                    "A request with this Idempotency-Key was being processed; try again.",
                    code="idempotency_key_in_use",
                ) from None
            return _replay(existing, idem.request_hash), True
        self.observer.job_submitted(job)
        if self.waker is not None:
            self.waker.wake()
        return job, False

    async def _price(self, job: Job, model: CatalogModel, budgets: Budgets | None) -> None:
        """Record the job's estimated cost (on the route it will most likely run on: the first,
        or for interchangeable routes the cheapest that can run now) and, when its key has a
        budget, reserve it: one atomic write, refused with ``QuotaExceeded`` (429
        insufficient_quota) before anything is stored or sent when a budget would be crossed.

        For interchangeable routes the reservation is the dearest route's estimate: which one
        runs is decided when the job is claimed (the cheap one's circuit may open meanwhile,
        or it may fail and hand over to a dearer one), so reserving the cheapest would let
        spend pass a budget unnoticed; the job's end gives back what it did not cost.
        """
        prices = self.catalog.prices
        likely = model.routes[rank_routes(model, job.input, prices, self.availability)[0]]
        cost = estimate(self.catalog.price_of(likely), job.input)
        if cost is not None:
            job.meta["spend"] = {"estimate": cost, "currency": self.catalog.currency}
        if budgets is None or not budgets.any:
            return  # no budget: not one statement more
        unpriced = [r.name for r in model.routes if self.catalog.price_of(r) is None]
        if cost is None or unpriced:
            raise PermissionDenied(
                f"This API key has a budget, and the model '{model.id}' has an unpriced "
                f"route ({(unpriced or [model.routes[0].name])[0]}): its cost could not be "
                "counted. Use a priced model, or a key without a budget.",
                param="model",
                code="model_unpriced",
            )
        if model.interchangeable:
            cost = max(estimate(prices.get(r.name), job.input) or 0 for r in model.routes)
        day, month = day_and_month(job.created_at)
        refused = await self.store.charge_budget(job.owner, cost, budgets, day, month)
        if refused is not None:
            raise _over_budget(budgets, refused, cost, self.catalog.currency)
        job.meta["spend"].update(charged=cost, day=day, month=month)

    async def _hand_back(self, job: Job) -> None:
        """Undo the reservation of a job that was not stored after all."""
        spend = job.meta.get("spend") or {}
        if spend.get("charged"):
            await self.store.settle(
                Settlement(job.owner, -spend["charged"], spend["day"], spend["month"])
            )

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
        oldest_first: bool = False,
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
            oldest_first=oldest_first,
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

    async def purge_files(self, owner: str | None, job_id: str) -> Job:
        """Delete a finished job's result files and mark them purged (their URLs answer 410
        from then on); the job as it is afterwards."""
        job = await self.get(owner, job_id)
        if not job.status.terminal:
            raise Conflict(
                f"Job {job_id} is {job.status.value}; cancel it before deleting its files.",
                code="job_not_finished",
            )
        if self.storage is not None:
            await self.storage.delete(job.id)
        await self.store.mark_files_purged([job.id], time.time())
        return await self.get(owner, job.id)

    async def files_purged(self, job_id: str) -> bool:
        """Whether retention (or a purge) removed the job's files, or its whole record."""
        job = await self.store.get_job(job_id)
        return job is None or job.files_purged_at is not None

    async def webhook(self, job: Job) -> dict[str, Any] | None:
        """The job's webhook and its deliveries, as the job's answer shows them."""
        return await job_webhook(self.store, job)

    async def recent_latencies(self, limit: int) -> builtins.list[tuple[str, float]]:
        """``(model, seconds from submission to completion)`` of the last ``limit`` jobs
        that completed, of every owner, newest first (no inputs or outputs: public)."""
        return await self.store.recent_latencies(limit)
