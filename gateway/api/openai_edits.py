"""``POST /v1/images/edits``, as the ``openai`` SDK's ``client.images.edit`` sends it.

Multipart (as the SDK sends it): ``image`` (one file, or several as ``image[]``), ``mask``,
``prompt``, ``model``, ``n``, ``size``, ``response_format``, ``user``, and the kind's own
fields (``extra_body``); or JSON with the images as URLs (``"images": [{"image_url": …}]``,
``"mask": {"image_url": …}``, or plain URL strings). Any catalog model whose kind takes an
input image runs behind it (``openai_edit_inputs.py``).

Synchronous like ``/v1/images/generations`` (``openai_sync.py``): it submits a job and
waits up to ``BACKSERV_SYNC_WAIT_SECONDS``; a job still running answers 504 with its id,
never to be paid for twice. Uploaded files are checked and stored as the job's input files
(``uploads.py``), never in its database row.
"""

from __future__ import annotations

import contextlib
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from gateway.api.common import json, principal
from gateway.api.multipart import Params, read_params
from gateway.api.openai_edit_inputs import edit_input, shape_of
from gateway.api.openai_sync import (
    default_model,
    image_data,
    outcome_error,
    refuse_jobs_only,
    response_format,
)
from gateway.catalog import CatalogModel
from gateway.errors import InvalidRequest
from gateway.idempotency import read_idempotency, replay_headers
from gateway.jobs import Status, new_job_id
from gateway.results import ResultLinks
from gateway.service import JobRequest, JobService
from gateway.storage import ResultStorage
from gateway.uploads import Uploads
from gateway.waiting import Waiting

_OPENAI = frozenset(
    {
        "model",
        "prompt",
        "n",
        "size",
        "response_format",
        "user",
        "image",
        "images",
        "mask",
        "webhook_url",
        "webhook_events",
    }
)
#: OpenAI parameters without a meaning here; accepted and ignored so SDK defaults pass
_IGNORED = frozenset(
    {
        "background",
        "complexity",
        "frame_count",
        "frame_duration_ms",
        "input_fidelity",
        "moderation",
        "output_compression",
        "output_format",
        "partial_images",
        "quality",
        "safety_identifier",
        "stream",
        "style",
    }
)
#: canonical input fields reported under the OpenAI name the client sent
_PARAM_NAMES = {
    "width": "size",
    "height": "size",
    "mask_url": "mask",
    "image_url": "image",
    "image_urls": "image",
    "target_image": "image",
    "reference_image_urls": "image",
}
MAX_IMAGES = 16


def _url_of(item: Any, param: str) -> str:
    if isinstance(item, dict) and set(item) == {"image_url"}:
        item = item["image_url"]
    if not isinstance(item, str):
        raise InvalidRequest(
            f"Invalid '{param}': give an image URL as a string or as {{\"image_url\": URL}}.",
            param=param,
            code="invalid_type",
        )
    return item


def _json_images(body: dict[str, Any]) -> tuple[list[str], str | None]:
    raw = body.get("images", body.get("image"))
    items = raw if isinstance(raw, list) else ([] if raw is None else [raw])
    if len(items) > MAX_IMAGES:
        raise InvalidRequest(
            f"Invalid 'image': at most {MAX_IMAGES} images.", param="image", code="invalid_value"
        )
    mask = body.get("mask")
    return [_url_of(i, "image") for i in items], None if mask is None else _url_of(mask, "mask")


def _extras(model: CatalogModel, params: Params) -> dict[str, Any]:
    """The kind's own fields; in a form, numbers come as text and are read as numbers."""
    numeric = model.kind.numeric_fields
    out: dict[str, Any] = {}
    for name, value in params.body.items():
        if name in _OPENAI or name in _IGNORED:
            continue
        if params.multipart and name in numeric and isinstance(value, str):
            with contextlib.suppress(ValueError):  # else the kind's validation names it
                value = int(value) if value.lstrip("-").isdigit() else float(value)
        out[name] = value
    return out


class EditsAPI:
    def __init__(
        self,
        service: JobService,
        waiting: Waiting,
        storage: ResultStorage,
        links: ResultLinks,
        uploads: Uploads,
        *,
        max_body: int,
        max_upload: int,
        sync_wait: float,
    ) -> None:
        self.service = service
        self.waiting = waiting
        self.storage = storage
        self.links = links
        self.uploads = uploads
        self.max_body = max_body
        self.max_upload = max_upload
        self.sync_wait = sync_wait

    def routes(self) -> list[Route]:
        return [Route("/v1/images/edits", self.edit, methods=["POST"])]

    async def edit(self, request: Request) -> Response:
        who = await principal(request)
        params = await read_params(request, max_json=self.max_body, max_form=self.max_upload)
        body = params.body
        idem = read_idempotency(request.headers, request.scope["path"], params.hashable())
        model = self.service.resolve(body.get("model") or default_model(self.service, "edit"))
        shape_of(model)
        refuse_jobs_only(model)
        fmt = response_format(body)
        user = body.get("user")
        job_id = new_job_id()
        uploaded = [("image", u) for u in params.files.get("image", [])]
        masks = [("mask", u) for u in params.files.get("mask", [])]
        if len(masks) > 1:
            raise InvalidRequest(
                "Invalid 'mask': send one mask.", param="mask", code="invalid_value"
            )
        if params.multipart:
            if "image" in body or "mask" in body:
                name = "image" if "image" in body else "mask"
                raise InvalidRequest(
                    f"Invalid '{name}': in a multipart request it must be a file.",
                    param=name,
                    code="invalid_type",
                )
            urls = await self.uploads.store(job_id, uploaded + masks)
            images, mask = urls[: len(uploaded)], (urls[-1] if masks else None)
        else:
            images, mask = _json_images(body)
        with self.waiting.hold(who.owner):
            try:
                job, replayed = await self.service.submit(
                    JobRequest(
                        owner=who.owner,
                        limits=who.limits,
                        model=model,
                        input=edit_input(model, images, mask, body, _extras(model, params)),
                        meta={
                            "face": "openai_edits",
                            **({"user": user} if isinstance(user, str) and user else {}),
                        },
                        webhook_url=body.get("webhook_url"),
                        webhook_events=body.get("webhook_events"),
                        idempotency=idem,
                        job_id=job_id,
                    )
                )
            except BaseException as exc:
                if isinstance(exc, InvalidRequest) and exc.param in _PARAM_NAMES:
                    exc.param = _PARAM_NAMES[exc.param]
                if params.files:
                    await self.uploads.discard(job_id)
                raise
            if replayed and params.files:
                await self.uploads.discard(job_id)
            job = await self.waiting.held(request.receive, job, self.sync_wait)
        headers = {"x-backserv-job-id": job.id, **replay_headers(replayed)}
        if job.status is Status.COMPLETED:
            prompt = str(body.get("prompt") or "")
            data = await image_data(job, fmt, prompt, self.storage, self.links)
            return json({"created": int(job.created_at), "data": data}, 200, headers)
        raise outcome_error(job)
