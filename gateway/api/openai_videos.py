"""OpenAI's video API, ``/v1/videos``, as the ``openai`` SDK's ``client.videos`` speaks it.

``POST /v1/videos`` (multipart, as the SDK sends it, or JSON) creates a job of kind
``video`` on any catalog video model and answers its Video object at once
(``openai_video_object.py``); ``GET /v1/videos/{id}`` is polled (``create_and_poll``);
``GET /v1/videos`` lists (``after``, ``limit``, ``order``); ``DELETE`` cancels a video still
running, then deletes its files and record; ``GET …/content?variant=`` answers the bytes;
``POST …/remix`` makes a new video from a completed one's settings with a new prompt.

A video is a job: the same id in ``GET /v1/jobs``, its SSE stream and its webhooks, and
the key's limits and quotas count it. Another key's video is a 404, as a missing one is.
With ``webhook_url`` (``extra_body``), the job's webhook is worded as OpenAI's own
(``video.completed`` / ``video.failed``, ``gateway/webhooks/due.py``), signed with the key's
secret (``GET /v1/webhook_secret``), so ``client.webhooks.unwrap`` verifies and parses it.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from gateway.api.common import json, principal, query_int, read_json
from gateway.api.multipart import Params, read_params
from gateway.api.openai_sync import default_model
from gateway.api.openai_video_content import check_variant, draw, refuse_undrawable
from gateway.api.openai_video_object import REMIXED_FROM, render_deleted, render_video
from gateway.api.openai_video_params import PARAM_NAMES, reference, video_input
from gateway.api.ranges import stored_file_response
from gateway.auth import Principal
from gateway.errors import Conflict, Gone, InvalidRequest, NotFound
from gateway.idempotency import Idempotency, read_idempotency, replay_headers
from gateway.jobs import Job, Status, new_job_id
from gateway.results import ResultLinks
from gateway.service import JobRequest, JobService
from gateway.storage import ResultStorage
from gateway.uploads import Uploads

#: what ``create_and_poll`` waits between polls when it is not told (``openai-poll-after-ms``)
POLL_AFTER_MS = 1000
FACE = "openai_videos"


class VideosAPI:
    def __init__(
        self,
        service: JobService,
        storage: ResultStorage,
        links: ResultLinks,
        uploads: Uploads,
        *,
        max_body: int,
        max_upload: int,
    ) -> None:
        self.service = service
        self.storage = storage
        self.links = links
        self.uploads = uploads
        self.max_body = max_body
        self.max_upload = max_upload

    def routes(self) -> list[Route]:
        return [
            Route("/v1/videos", self.create, methods=["POST"]),
            Route("/v1/videos", self.list, methods=["GET"]),
            Route("/v1/videos/{video_id}", self.retrieve, methods=["GET"]),
            Route("/v1/videos/{video_id}", self.delete, methods=["DELETE"]),
            Route("/v1/videos/{video_id}/content", self.content, methods=["GET"]),
            Route("/v1/videos/{video_id}/remix", self.remix, methods=["POST"]),
        ]

    def _video(
        self, job: Job, status: int = 200, headers: dict[str, str] | None = None
    ) -> Response:
        extra = {} if job.status.terminal else {"openai-poll-after-ms": str(POLL_AFTER_MS)}
        return json(render_video(job, self.links), status, {**extra, **(headers or {})})

    async def _get(self, owner: str, video_id: str) -> Job:
        try:
            job = await self.service.get(owner, video_id)
        except NotFound:
            job = None
        if job is None or job.kind != "video":
            raise NotFound(
                f"No video with id '{video_id}'.", param="video_id", code="video_not_found"
            )
        return job

    # -- create ---------------------------------------------------------------------------

    async def create(self, request: Request) -> Response:
        who = await principal(request)
        params = await read_params(request, max_json=self.max_body, max_form=self.max_upload)
        body = params.body
        idem = read_idempotency(request.headers, request.scope["path"], params.hashable())
        model = self.service.resolve(body.get("model") or default_model(self.service, "video"))
        if model.kind.name != "video":
            raise InvalidRequest(
                f"The model '{model.id}' is a {model.kind.name} model; /v1/videos runs video "
                "models (GET /v1/models lists them).",
                param="model",
                code="wrong_model_kind",
            )
        upload, url = reference(params)
        job_id = new_job_id()
        if upload is not None:
            [url] = await self.uploads.store(job_id, [("input_reference", upload)])
        try:
            job, replayed = await self._submit(who, params, model.id, url, job_id, idem)
        except BaseException:
            if upload is not None:
                await self.uploads.discard(job_id)
            raise
        if replayed and upload is not None:
            await self.uploads.discard(job_id)
        return self._video(job, 200, {"x-backserv-job-id": job.id, **replay_headers(replayed)})

    async def _submit(
        self,
        who: Principal,
        params: Params,
        model_id: str,
        image_url: str | None,
        job_id: str,
        idem: Idempotency | None,
        meta: dict[str, Any] | None = None,
    ) -> tuple[Job, bool]:
        body = params.body
        model = self.service.resolve(model_id, kind="video")
        if body.get("webhook_events") is not None:
            raise InvalidRequest(
                "A video's webhook sends OpenAI's video.completed and video.failed events "
                "only; leave 'webhook_events' out.",
                param="webhook_events",
                code="unsupported_parameter",
            )
        user = body.get("user")
        try:
            return await self.service.submit(
                JobRequest(
                    owner=who.owner,
                    limits=who.limits,
                    model=model,
                    input=video_input(model, params, image_url),
                    meta={
                        "face": FACE,
                        **({"user": user} if isinstance(user, str) and user else {}),
                        **(meta or {}),
                    },
                    webhook_url=body.get("webhook_url"),
                    idempotency=idem,
                    job_id=job_id,
                    webhook_format="openai",
                )
            )
        except InvalidRequest as exc:
            if exc.param in PARAM_NAMES:
                exc.param = PARAM_NAMES[exc.param]
            raise

    async def remix(self, request: Request) -> Response:
        who = await principal(request)
        source = await self._get(who.owner, request.path_params["video_id"])
        body = await read_json(request, self.max_body)
        idem = read_idempotency(request.headers, request.scope["path"], body)
        if source.status is not Status.COMPLETED:
            raise InvalidRequest(
                f"Video {source.id} is {render_video(source, self.links)['status']}; only a "
                "completed video can be remixed.",
                param="video_id",
                code="video_not_ready",
            )
        extras = {k: v for k, v in body.items() if k in ("prompt", "webhook_url", "user")}
        unknown = sorted(set(body) - set(extras) - {"webhook_events"})
        if unknown:
            raise InvalidRequest(
                f"Unknown parameter '{unknown[0]}': a remix takes 'prompt' (and 'webhook_url').",
                param=unknown[0],
                code="unknown_parameter",
            )
        kept = {k: v for k, v in source.input.items() if k not in ("prompt", "image_url")}
        params = Params({**kept, **extras, "webhook_events": body.get("webhook_events")})
        params.body = {k: v for k, v in params.body.items() if v is not None}
        job, replayed = await self._submit(
            who,
            params,
            source.model,
            source.input.get("image_url"),
            new_job_id(),
            idem,
            {REMIXED_FROM: source.id},
        )
        return self._video(job, 200, {"x-backserv-job-id": job.id, **replay_headers(replayed)})

    # -- read -----------------------------------------------------------------------------

    async def retrieve(self, request: Request) -> Response:
        who = await principal(request)
        return self._video(await self._get(who.owner, request.path_params["video_id"]))

    async def list(self, request: Request) -> Response:
        who = await principal(request)
        limit = query_int(request, "limit", 20, 1, 100)
        order = request.query_params.get("order") or "desc"
        if order not in ("asc", "desc"):
            raise InvalidRequest(
                "Invalid 'order': must be 'asc' or 'desc'.", param="order", code="invalid_value"
            )
        jobs, more = await self.service.list(
            who.owner,
            limit=limit,
            after=request.query_params.get("after") or None,
            status=None,
            model=None,
            kinds=["video"],
            oldest_first=order == "asc",
        )
        data = [render_video(job, self.links) for job in jobs]
        return json(
            {
                "object": "list",
                "data": data,
                "first_id": data[0]["id"] if data else None,
                "last_id": data[-1]["id"] if data else None,
                "has_more": more,
            }
        )

    async def content(self, request: Request) -> Response:
        who = await principal(request)
        variant = check_variant(request.query_params.get("variant"))
        job = await self._get(who.owner, request.path_params["video_id"])
        if job.status is not Status.COMPLETED:
            raise InvalidRequest(
                f"Video {job.id} is {render_video(job, self.links)['status']}; its content "
                "exists once it is completed.",
                param="video_id",
                code="video_not_ready",
            )
        files = (job.result or {}).get("files") or []
        if not files:
            raise NotFound(f"Video {job.id} has no file.", code="file_not_found")
        name, content_type = str(files[0]["name"]), str(files[0]["content_type"])
        refuse_undrawable(variant, content_type, job.model)
        info = await self.storage.stat(job.id, name)
        if job.files_purged_at is not None or info is None:
            raise Gone(
                f"The content of video {job.id} has expired: results are kept for a limited "
                "time after the video completes.",
                code="file_expired",
            )
        if variant == "video":
            return stored_file_response(request, self.storage, job.id, name, info, {})
        data = await self.storage.read_all(job.id, name) or b""
        try:
            drawn, media_type = await asyncio.to_thread(draw, variant, data, content_type)
        except (OSError, ValueError, EOFError) as exc:
            raise InvalidRequest(
                f"Invalid 'variant': a {variant} cannot be drawn from video {job.id} "
                f"({type(exc).__name__}).",
                param="variant",
                code="unsupported_variant",
            ) from None
        return Response(drawn, media_type=media_type)

    # -- delete ---------------------------------------------------------------------------

    async def delete(self, request: Request) -> Response:
        who = await principal(request)
        job = await self._get(who.owner, request.path_params["video_id"])
        if not job.status.terminal:
            with contextlib.suppress(Conflict):  # it finished meanwhile: deleted as it is
                await self.service.cancel(who.owner, job.id)
        await self.service.purge_files(who.owner, job.id)
        await self.service.delete(who.owner, job.id)
        return json(render_deleted(job.id))
