"""A video job as OpenAI's Video object, the shape ``openai``'s ``client.videos`` parses.

``{"id", "object": "video", "model", "status", "progress", "created_at", "completed_at",
"expires_at", "seconds", "size", "prompt", "remixed_from_video_id", "error"}``. The id is
the job's own id: a video is a job (``GET /v1/jobs/{id}`` shows the same one).

Status: QUEUED is ``queued``, PROCESSING ``in_progress``, COMPLETED ``completed``; FAILED
and CANCELLED are both ``failed`` (OpenAI has no cancelled video), with ``error.code``
``cancelled`` for the latter. ``seconds`` and ``size`` are the job's canonical duration and
frame size (``"4"``, ``"512x512"``); ``expires_at`` is when the content's links expire.
"""

from __future__ import annotations

from typing import Any

from gateway.jobs import Job, Status
from gateway.results import ResultLinks

STATUSES = {
    Status.QUEUED: "queued",
    Status.PROCESSING: "in_progress",
    Status.COMPLETED: "completed",
    Status.FAILED: "failed",
    Status.CANCELLED: "failed",
}
#: the meta key of a remix's source video
REMIXED_FROM = "remixed_from_video_id"


def video_error(job: Job) -> dict[str, Any] | None:
    if job.status is Status.CANCELLED:
        return {"code": "cancelled", "message": f"Video {job.id} was cancelled."}
    if job.status is not Status.FAILED:
        return None
    error = job.error or {}
    return {
        "code": str(error.get("code") or "job_failed"),
        "message": str(error.get("message") or "The video could not be generated."),
    }


def render_video(job: Job, links: ResultLinks) -> dict[str, Any]:
    """``job`` (of kind ``video``) as a Video object."""
    data = job.input
    completed = job.status is Status.COMPLETED
    remixed = job.meta.get(REMIXED_FROM)
    return {
        "id": job.id,
        "object": "video",
        "model": job.model,
        "status": STATUSES[job.status],
        "progress": 100 if completed else max(0, min(100, int(job.progress))),
        "created_at": int(job.created_at),
        "completed_at": int(job.completed_at) if job.completed_at is not None else None,
        "expires_at": links.expires(job) if completed else None,
        "seconds": str(data.get("duration", "")),
        "size": f"{data.get('width')}x{data.get('height')}",
        "prompt": data.get("prompt"),
        "remixed_from_video_id": remixed if isinstance(remixed, str) else None,
        "error": video_error(job),
    }


def render_deleted(video_id: str) -> dict[str, Any]:
    return {"id": video_id, "object": "video.deleted", "deleted": True}
