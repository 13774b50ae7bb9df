"""The Jobs API face (seed: jobs-api.md), under ``/v1``.

``POST /v1/jobs/images`` and the generic ``POST /v1/jobs``; ``GET /v1/jobs/{id}``;
``GET /v1/jobs`` (newest first, cursor pagination); ``POST /v1/jobs/{id}/cancel``. A GET may
long-poll with ``?wait=N``. Both POSTs
honour an ``Idempotency-Key`` header (gateway/idempotency.py).
"""

from __future__ import annotations

from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from gateway.api.common import body_int, json, principal, query_int, read_json
from gateway.api.job_views import JobViews
from gateway.auth import Principal
from gateway.errors import InvalidRequest, PermissionDenied
from gateway.idempotency import read_idempotency, replay_headers
from gateway.jobs import Job, Status
from gateway.pricing import money
from gateway.results import ResultLinks
from gateway.service import JobRequest, JobService
from gateway.spend import job_usage
from gateway.waiting import Waiting

PRIORITY_RANGE = (-100, 100)
#: top-level fields of POST /v1/jobs/images that are not part of the image input
_IMAGE_ENVELOPE = {"model", "priority", "webhook_url", "webhook_events"}
_GENERIC_FIELDS = {"model", "input", "priority", "webhook_url", "webhook_events"}


def _iso_or_none(value: float | None) -> int | None:
    return None if value is None else int(value)


def render_result(job: Job, links: ResultLinks) -> dict[str, Any] | None:
    if job.result is None:
        return None
    expires = links.expires(job)
    files = [
        {
            "url": links.url(job, f["name"]),
            "content_type": f["content_type"],
            "width": f.get("width"),
            "height": f.get("height"),
        }
        for f in job.result.get("files", [])
    ]
    out: dict[str, Any] = dict(files[0]) if files else {}
    for key in ("seed", "duration", "fps"):
        if key in job.result:
            out[key] = job.result[key]
    out["expires_at"] = expires
    if job.files_purged_at is not None:  # the retention janitor deleted the files: URLs are 410
        out["expired"] = True
    if job.kind == "video":
        out["videos"] = files
    else:
        out["images"] = files
    return out


def render_job(job: Job, links: ResultLinks) -> dict[str, Any]:
    body: dict[str, Any] = {
        "id": job.id,
        "object": "job",
        "status": job.status.value,
        "model": job.model,
        "kind": job.kind,
        "created_at": int(job.created_at),
        "started_at": _iso_or_none(job.started_at),
        "completed_at": _iso_or_none(job.completed_at),
        "progress": 100 if job.status is Status.COMPLETED else job.progress,
        "queue_position": job.queue_position,
        "priority": job.priority,
        "input": job.input,
        "provider": job.provider,
        "retry_count": job.retry_count,
        "fallback_used": job.fallback_used,
        "usage": job_usage(job).to_dict(),
        "attempts": [
            {
                "n": a["n"],
                "route": a["route"],
                "provider": a["provider"],
                "request_id": a.get("request_id"),
                "started_at": a.get("started_at"),
                "ended_at": a.get("ended_at"),
                "outcome": a.get("outcome"),
                "error": a.get("error"),
                "cost": None if not attempt.priced else money(attempt.charge),
            }
            for a, attempt in zip(job.attempt_dicts(), job.attempts, strict=True)
        ],
    }
    if job.status is Status.COMPLETED:
        body["result"] = render_result(job, links)
    if job.error is not None:
        body["error"] = job.error
    return body


MAX_WAIT_SECONDS = 60


def _meta_filters(request: Request) -> dict[str, str] | None:
    """``user_id`` (recorded by the Back.Serv task API) filters a listing too."""
    user_id = request.query_params.get("user_id")
    return {"user_id": user_id} if user_id else None


#: the image submit: the hot path of every face (``SubmitShortcut`` serves it first)
SUBMIT_PATH = "/v1/jobs/images"


class JobsAPI:
    def __init__(
        self,
        service: JobService,
        links: ResultLinks,
        max_body: int,
        waiting: Waiting,
        views: JobViews | None = None,
    ) -> None:
        self.service = service
        self.links = links
        self.max_body = max_body
        self.waiting = waiting
        self.views = views if views is not None else JobViews(ttl=0)

    def routes(self) -> list[Route]:
        # the router tries routes in order and clients poll most: the poll comes second,
        # after the one literal path its template also fits (a 405 there names POST only)
        return [
            Route(SUBMIT_PATH, self.create_image, methods=["POST"]),
            Route("/v1/jobs/{job_id}", self.get_job, methods=["GET"]),
            Route("/v1/jobs", self.create_generic, methods=["POST"]),
            Route("/v1/jobs", self.list_jobs, methods=["GET"]),
            Route("/v1/jobs/{job_id}/cancel", self.cancel_job, methods=["POST"]),
        ]

    def _render(self, job: Job) -> dict[str, Any]:
        return render_job(job, self.links)

    def _accepted(self, job: Job, replayed: bool = False) -> Response:
        """202 and the job; a replay of an earlier request answers the same way, marked."""
        headers = {"Location": f"/v1/jobs/{job.id}", **replay_headers(replayed)}
        return json(self._render(job), 202, headers)

    async def create_image(self, request: Request) -> Response:
        who = await principal(request)
        body = await read_json(request, self.max_body)
        idem = read_idempotency(request.headers, request.scope["path"], body)
        model = self.service.resolve(body.get("model"), kind="image")
        job, replayed = await self.service.submit(
            JobRequest(
                owner=who.owner,
                limits=who.limits,
                model=model,
                input={k: v for k, v in body.items() if k not in _IMAGE_ENVELOPE},
                priority=body_int(body, "priority", 0, *PRIORITY_RANGE),
                webhook_url=body.get("webhook_url"),
                webhook_events=body.get("webhook_events"),
                idempotency=idem,
            )
        )
        return self._accepted(job, replayed)

    async def create_generic(self, request: Request) -> Response:
        who = await principal(request)
        body = await read_json(request, self.max_body)
        idem = read_idempotency(request.headers, request.scope["path"], body)
        for key in body:
            if key not in _GENERIC_FIELDS:
                raise InvalidRequest(
                    f"Unknown parameter '{key}'. POST /v1/jobs takes 'model', 'input', "
                    f"'priority', 'webhook_url' and 'webhook_events'.",
                    param=key,
                    code="unknown_parameter",
                )
        model = self.service.resolve(body.get("model"))
        raw = body.get("input")
        if raw is None:
            raise InvalidRequest(
                "Missing required parameter 'input'.", param="input", code="missing_parameter"
            )
        job, replayed = await self.service.submit(
            JobRequest(
                owner=who.owner,
                limits=who.limits,
                model=model,
                input=raw,
                priority=body_int(body, "priority", 0, *PRIORITY_RANGE),
                param_prefix="input.",
                webhook_url=body.get("webhook_url"),
                webhook_events=body.get("webhook_events"),
                idempotency=idem,
            )
        )
        return self._accepted(job, replayed)

    async def get_job(self, request: Request) -> Response:
        """The job; with ``?wait=N`` (N <= 60) the answer waits until the job is terminal or
        N seconds passed, whichever comes first, without polling the database. A plain poll
        is answered from the cache of rendered jobs when it holds the job (``JobViews``)."""
        who = await principal(request)
        query = request.scope["query_string"]
        wait = query_int(request, "wait", 0, 0, MAX_WAIT_SECONDS) if query else 0
        job_id = request.path_params["job_id"]
        view = None if wait else self.views.get(job_id)
        if view is not None and (who.is_admin or view.owner == who.owner):
            return Response(view.body, media_type="application/json")
        owner = None if who.is_admin else who.owner  # an admin key reads every owner's jobs
        token = self.views.reserve(job_id)
        try:
            job = await self.service.get(owner, job_id)
            if wait and not job.status.terminal:
                job = await self.waiting.until_terminal(request.receive, who.owner, job, wait)
            body = self._render(job)
            if (hook := await self.service.webhook(job)) is not None:
                body["webhook"] = hook  # its deliveries change without the job: not cached
            raw = orjson.dumps(body)
            if hook is None:
                self.views.put(job_id, token, job.owner, raw)
        finally:
            self.views.release(job_id, token)
        return Response(raw, media_type="application/json")

    async def list_jobs(self, request: Request) -> Response:
        who = await principal(request)
        limit = query_int(request, "limit", 20, 1, 100)
        status_raw = request.query_params.get("status")
        status = None
        if status_raw:
            try:
                status = Status(status_raw.upper())
            except ValueError:
                raise InvalidRequest(
                    f"Invalid 'status': must be one of {', '.join(s.value for s in Status)}.",
                    param="status",
                    code="invalid_value",
                ) from None
        jobs, has_more = await self.service.list(
            _list_owner(who, request.query_params.get("owner") or None),
            limit=limit,
            after=request.query_params.get("after") or None,
            status=status,
            model=request.query_params.get("model") or None,
            meta=_meta_filters(request),
        )
        data = [self._render(j) for j in jobs]
        return json(
            {
                "object": "list",
                "jobs": data,
                "has_more": has_more,
                "first_id": data[0]["id"] if data else None,
                "last_id": data[-1]["id"] if data else None,
            }
        )

    async def cancel_job(self, request: Request) -> Response:
        who = await principal(request)
        job = await self.service.cancel(who.owner, request.path_params["job_id"])
        return json(self._render(job))


def _list_owner(who: Principal, wanted: str | None) -> str | None:
    """Whose jobs ``GET /v1/jobs`` lists: an admin key every owner's (or ``?owner=``'s), any
    other key its own; asking for another owner's jobs without ``admin`` is a 403."""
    if who.is_admin:
        return wanted
    if wanted is not None and wanted != who.owner:
        raise PermissionDenied(
            "Only an API key with the 'admin' scope may list another owner's jobs.",
            param="owner",
            code="admin_required",
        )
    return who.owner
