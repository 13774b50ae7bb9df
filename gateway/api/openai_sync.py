"""What the synchronous OpenAI image endpoints share (``/v1/images/generations`` and
``/v1/images/edits``): ``size`` and ``response_format`` as OpenAI words them, the answer's
``data`` list, and the one rule for a job that did not complete within the wait.

That rule: a job still running answers 504 with its id, a failed one 502 (or 400 when the
provider rejected the input), a cancelled one 409, all with ``x-should-retry: false`` so the
SDK never pays for the job again (``gateway/errors.py``'s ``_JobOutcome``).
"""

from __future__ import annotations

import base64
import re
from typing import Any

from gateway.catalog import CatalogModel
from gateway.errors import (
    InvalidRequest,
    JobCancelledMeanwhile,
    JobFailedUpstream,
    JobStillRunning,
)
from gateway.jobs import Job, Status
from gateway.results import ResultLinks
from gateway.service import JobService
from gateway.storage import ResultStorage

_SIZE = re.compile(r"^(\d{2,5})x(\d{2,5})$")


def parse_size(value: Any, example: str = "1024x1024") -> dict[str, int]:
    """``"WxH"`` as ``{"width", "height"}``; absent or ``"auto"`` is ``{}``."""
    if value is None or value == "auto":
        return {}
    match = _SIZE.match(value) if isinstance(value, str) else None
    if match is None:
        raise InvalidRequest(
            f"Invalid 'size': must be 'WIDTHxHEIGHT', e.g. '{example}'.",
            param="size",
            code="invalid_value",
        )
    return {"width": int(match.group(1)), "height": int(match.group(2))}


def response_format(body: dict[str, Any]) -> str:
    fmt = body.get("response_format") or "url"
    if fmt not in ("url", "b64_json"):
        raise InvalidRequest(
            "Invalid 'response_format': must be 'url' or 'b64_json'.",
            param="response_format",
            code="invalid_value",
        )
    return str(fmt)


def default_model(service: JobService, kind: str) -> str:
    """The model of a request that names none: the catalog's first model of ``kind``
    (OpenAI's SDK makes ``model`` optional; its own default is one of OpenAI's models)."""
    for model in service.catalog.models.values():
        if model.kind.name == kind:
            return model.id
    raise InvalidRequest(
        f"Missing required parameter 'model': the catalog has no {kind} model to default to.",
        param="model",
        code="missing_parameter",
    )


def refuse_jobs_only(model: CatalogModel, jobs_path: str = "/v1/jobs") -> None:
    if model.jobs_only:
        raise InvalidRequest(
            f"The model '{model.id}' is jobs-only: create the job with POST "
            f"{jobs_path} and poll GET /v1/jobs/{{id}}.",
            param="model",
            code="jobs_only_model",
        )


async def image_data(
    job: Job, fmt: str, prompt: str, storage: ResultStorage, links: ResultLinks
) -> list[dict[str, Any]]:
    """The answer's ``data``: one item per result file, a URL or the bytes in base64."""
    files = (job.result or {}).get("files", [])
    out = []
    for f in files:
        item: dict[str, Any] = {"revised_prompt": prompt}
        if fmt == "b64_json":
            raw = await storage.read_all(job.id, f["name"]) or b""
            item["b64_json"] = base64.b64encode(raw).decode()
        else:
            item["url"] = links.url(job, f["name"])
        out.append(item)
    return out


def outcome_error(job: Job) -> Exception:
    """The error for a job that is not COMPLETED when the wait ends."""
    if job.status is Status.FAILED:
        error = job.error or {}
        message = str(error.get("message") or "The job failed.")
        code = str(error.get("code") or "job_failed")
        if code == "invalid_input":
            param = error.get("param")
            return InvalidRequest(
                message, param=param if isinstance(param, str) else None, code=code
            )
        return JobFailedUpstream(f"{message} (job {job.id})", job_id=job.id, code=code)
    if job.status is Status.CANCELLED:
        return JobCancelledMeanwhile(
            f"Job {job.id} was cancelled before it finished.", job_id=job.id, code="job_cancelled"
        )
    return JobStillRunning(
        f"The image is still being generated. Poll GET /v1/jobs/{job.id} for it.",
        job_id=job.id,
        code="job_still_running",
    )
