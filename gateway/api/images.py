"""The OpenAI images face: ``POST /v1/images/generations``, for the official ``openai`` SDK.

The request is OpenAI's (``model``, ``prompt``, ``n``, ``size`` ``"WxH"``, ``response_format``
``url``/``b64_json``, ``user``) plus the image kind's own fields as pass-through extras
(``negative_prompt``, ``seed``, ``steps``, ``cfg_scale``, ``sampler``). It submits a job and
waits for it (``BACKSERV_SYNC_WAIT_SECONDS``); a job still running then answers 504 with its
id, a failed one 502 (or 400 when the provider rejected the input), both with
``x-should-retry: false`` so the SDK does not pay for the job again.
"""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from gateway.api.common import body_str, json, principal, read_json
from gateway.api.image_size import read_n, read_size
from gateway.api.openai_sync import (
    image_data,
    outcome_error,
    refuse_jobs_only,
    response_format,
)
from gateway.errors import InvalidRequest
from gateway.idempotency import read_idempotency, replay_headers
from gateway.jobs import Status
from gateway.results import ResultLinks
from gateway.service import JobRequest, JobService
from gateway.storage import ResultStorage
from gateway.waiting import Waiting

#: OpenAI parameters without a meaning here; accepted and ignored so SDK defaults pass
_IGNORED = frozenset(
    {
        "quality",
        "style",
        "background",
        "moderation",
        "output_compression",
        "output_format",
        "safety_identifier",
        "stream",
        "partial_images",
    }
)
_OPENAI = frozenset(
    {"model", "prompt", "n", "size", "response_format", "user", "webhook_url", "webhook_events"}
)
#: canonical input fields reported under the OpenAI name the client sent
_PARAM_NAMES = {"num_images": "n", "width": "size", "height": "size"}


class ImagesAPI:
    def __init__(
        self,
        service: JobService,
        waiting: Waiting,
        storage: ResultStorage,
        links: ResultLinks,
        *,
        max_body: int,
        sync_wait: float,
    ) -> None:
        self.service = service
        self.waiting = waiting
        self.storage = storage
        self.links = links
        self.max_body = max_body
        self.sync_wait = sync_wait

    def routes(self) -> list[Route]:
        return [Route("/v1/images/generations", self.generate, methods=["POST"])]

    async def generate(self, request: Request) -> Response:
        who = await principal(request)
        body = await read_json(request, self.max_body)
        idem = read_idempotency(request.headers, request.scope["path"], body)
        model = self.service.resolve(body.get("model"), kind="image")
        refuse_jobs_only(model, "/v1/jobs/images")
        fmt = response_format(body)
        user = body_str(body, "user", required=False)
        raw: dict[str, Any] = {
            k: v for k, v in body.items() if k not in _OPENAI and k not in _IGNORED
        }
        raw["prompt"] = body_str(body, "prompt")
        raw["num_images"] = read_n(body, model)
        raw.update(read_size(body.get("size"), model))
        # the slot of this wait is taken before the job exists: a key at its cap of open
        # waits gets a 429 that is safe to retry, never a 429 for a job that then runs
        with self.waiting.hold(who.owner):
            try:
                job, replayed = await self.service.submit(
                    JobRequest(
                        owner=who.owner,
                        limits=who.limits,
                        model=model,
                        input=raw,
                        meta={"face": "openai", **({"user": user} if user else {})},
                        webhook_url=body.get("webhook_url"),
                        webhook_events=body.get("webhook_events"),
                        idempotency=idem,
                    )
                )
            except InvalidRequest as exc:
                if exc.param in _PARAM_NAMES:
                    exc.param = _PARAM_NAMES[exc.param]
                raise
            job = await self.waiting.held(request.receive, job, self.sync_wait)
        headers = {"x-backserv-job-id": job.id, **replay_headers(replayed)}
        if job.status is Status.COMPLETED:
            data = await image_data(job, fmt, str(raw["prompt"]), self.storage, self.links)
            return json({"created": int(job.created_at), "data": data}, 200, headers)
        raise outcome_error(job)
