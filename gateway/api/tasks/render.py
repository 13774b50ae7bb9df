"""A stored job as the document's ``…TaskPublic`` object.

Fields come from three places: the job itself (status, timestamps, attempts, result files),
its canonical input (renamed back to the task type's names), and ``job.meta`` (what this face
stored at creation: the task type, the origin, the task's own fields no kind has). Jobs made
by the other faces have no task meta: they show as the task type of their kind
(``schemas.KIND_TASKS``), with ``origin_instance`` ``"backserv"``.

Derived fields: ``retry_count`` and ``fallback_used`` from the attempts; ``executor_instance``
is the worker holding the job's lease (while it runs); ``errors`` lists each
failed attempt's message; ``provider_type`` / ``fallback_provider_type`` are the task's wish,
else the first two routes of the job's chain (its own, or its model's); ``service_task_id``
is the job id (``GET /v1/jobs/{id}``);
``result_*`` are the gateway's signed file URLs (null once the files were deleted: cleanup,
DELETE or retention, which also set ``is_deleted`` / ``deleted_at``).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from gateway.api.tasks.ids import task_id_of
from gateway.api.tasks.schemas import KIND_TASKS, TASK_STATUS, TaskType
from gateway.catalog import Catalog
from gateway.errors import StorageUnavailable
from gateway.jobs import Job, Status
from gateway.results import ResultLinks
from gateway.storage import ResultStorage

MAX_TEXT_BYTES = 1024 * 1024
#: job.error codes -> the document's ErrorCategory (its values are not listed; these are ours)
_CATEGORIES = {
    "invalid_input": "VALIDATION",
    "timeout": "TIMEOUT",
    "internal_error": "INTERNAL",
    "model_not_found": "INTERNAL",
}

Fields = dict[str, Any]


def iso(timestamp: float | None) -> str | None:
    if timestamp is None:
        return None
    moment = datetime.fromtimestamp(timestamp, UTC)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def shown(url: Any) -> Any:
    """An input image as shown back: URLs as they are, ``data:`` URLs by their header only."""
    if isinstance(url, str) and url[:5].lower() == "data:":
        return url.split(",", 1)[0] + ",..."
    return url


def task_type_of(job: Job) -> TaskType | None:
    name = job.meta.get("task_type")
    if isinstance(name, str) and name in TaskType.__members__:
        return TaskType(name)
    return KIND_TASKS.get(job.kind)


def _canonical(job: Job) -> dict[str, Any]:
    """The job's input in the field names of the kind its task type runs."""
    if job.kind == "face_swap":
        return {
            "image_url": job.input.get("target_image"),
            "reference_image_urls": [job.input.get("source_image")],
        }
    return job.input


def _errors(job: Job) -> list[str] | None:
    out = [a.error["message"] for a in job.attempts if a.error is not None]
    final = (job.error or {}).get("message")
    if final and (not out or out[-1] != final):
        out.append(final)
    return out or None


def _category(job: Job) -> str | None:
    if job.status is not Status.FAILED or not job.error:
        return None
    return _CATEGORIES.get(str(job.error.get("code")), "PROVIDER")


def _fal_request_id(job: Job) -> str | None:
    ids = [a.request_id for a in job.attempts if a.provider == "fal"]
    return ids[-1] if ids else None


def _upper(name: Any) -> str | None:
    return name.upper() if isinstance(name, str) else None


class Renderer:
    def __init__(self, catalog: Catalog, links: ResultLinks, storage: ResultStorage) -> None:
        self.catalog = catalog
        self.links = links
        self.storage = storage

    async def task(self, job: Job) -> Fields | None:
        """The task of ``job``, or None for a job no task type stands for."""
        task_type = task_type_of(job)
        task_id = task_id_of(job.id)
        if task_type is None or task_id is None:
            return None
        meta, extras = job.meta, job.meta.get("task") or {}
        model = self.catalog.models.get(job.model)
        routes = model.for_job(meta).routes if model is not None else ()
        started = job.started_at is not None
        body: Fields = {
            "task_type": task_type.value,
            "priority": job.priority,
            "config": extras.get("config"),
            "origin_instance": meta.get("origin_instance") or "backserv",
            "origin_zone": meta.get("origin_zone"),
            "origin_tenant_id": meta.get("origin_tenant_id"),
            "origin_reference": meta.get("origin_reference"),
            "id": task_id,
            "created_at": iso(job.created_at),
            "updated_at": iso(job.updated_at or job.created_at),
            "status": TASK_STATUS[job.status],
            "started_at": iso(job.started_at),
            "completed_at": iso(job.completed_at),
            "executor_type": "backserv" if started else None,
            "executor_instance": job.lease_owner if started else None,
            "celery_task_id": None,
            "service_task_id": job.id,
            "provider_type": _upper(
                extras.get("provider_type") or (routes[0].provider if routes else job.provider)
            ),
            "active_provider_capabilities": extras.get("active_provider_capabilities"),
            "fallback_provider_type": _upper(
                extras.get("fallback_provider_type")
                or (routes[1].provider if len(routes) > 1 else None)
            ),
            "fallback_provider_config": extras.get("fallback_provider_config"),
            "fallback_provider_capabilities": extras.get("fallback_provider_capabilities"),
            "errors": _errors(job),
            "error_category": _category(job),
            "retry_count": job.retry_count,
            "progress": 100.0 if job.status is Status.COMPLETED else float(job.progress),
            "provider_config": extras.get("provider_config"),
        }
        urls = self._urls(job)
        body.update(_SPECIFIC[task_type](job, _canonical(job), extras, urls))
        if task_type is TaskType.LLM_INTERACTION:
            body["result_text"] = await self._text(job)
        body["fallback_used"] = job.fallback_used
        body["is_deleted"] = job.files_purged_at is not None
        body["deleted_at"] = iso(job.files_purged_at)
        return body

    def _urls(self, job: Job) -> list[str]:
        if job.status is not Status.COMPLETED or job.result is None or job.files_purged_at:
            return []
        return [self.links.url(job, f["name"]) for f in job.result.get("files", [])]

    async def _text(self, job: Job) -> str | None:
        """The text an LLM job produced (its first result file)."""
        if job.status is not Status.COMPLETED or job.result is None or job.files_purged_at:
            return None
        files = job.result.get("files") or []
        if not files:
            return None
        try:
            data = await self.storage.read_all(job.id, files[0]["name"], MAX_TEXT_BYTES)
        except (StorageUnavailable, OSError):
            return None
        return None if data is None else data.decode("utf-8", "replace")


# -- the fields of each task type -----------------------------------------------------------

Specific = Callable[[Job, dict[str, Any], dict[str, Any], list[str]], Fields]


def _first(urls: list[str]) -> str | None:
    return urls[0] if urls else None


def _fal_app_id(job: Job, extras: dict[str, Any]) -> str | None:
    if extras.get("fal_app_id"):
        return str(extras["fal_app_id"])
    routes = [a.route for a in job.attempts if a.provider == "fal"]
    return routes[-1].partition(":")[2] if routes else None


def _generation(job: Job, inp: Fields, extras: Fields, urls: list[str]) -> Fields:
    out: Fields = {}
    for part in ("subject", "product", "style", "product2"):
        out[f"{part}_model_path"] = extras.get(f"{part}_model_path")
    for part in ("subject", "product", "style", "product2"):
        out[f"{part}_lora_weight"] = extras.get(f"{part}_lora_weight")
    return out | {
        "workflow_id": extras.get("workflow_id"),
        "prompt": inp.get("prompt"),
        "width": inp.get("width"),
        "height": inp.get("height"),
        "seed": (job.result or {}).get("seed", inp.get("seed")),
        "result_image_path": _first(urls),
        "reference_image_path": shown(extras.get("reference_image_path")),
        "reference_image_strength": extras.get("reference_image_strength"),
        "fal_app_id": _fal_app_id(job, extras),
        "fal_request_id": _fal_request_id(job),
    }


def _video(job: Job, inp: Fields, extras: Fields, urls: list[str]) -> Fields:
    return {
        "cfg_scale": extras.get("cfg_scale"),
        "duration_seconds": inp.get("duration"),
        "input_image_path": shown(inp.get("image_url")),
        "negative_prompt": inp.get("negative_prompt"),
        "prompt": inp.get("prompt"),
        "result_video_path": _first(urls),
    }


def _editing(job: Job, inp: Fields, extras: Fields, urls: list[str]) -> Fields:
    refs = [shown(r) for r in inp.get("reference_image_urls") or []]
    return {
        "base_image_path": shown(inp.get("image_url")),
        "height": inp.get("height"),
        "width": inp.get("width"),
        "prompt": inp.get("prompt"),
        "reference_image_path": refs[0] if refs else None,
        "reference_images": refs or None,
        "result_image_path": _first(urls),
        "seed": inp.get("seed"),
        "workflow_id": extras.get("workflow_id"),
        "fal_app_id": _fal_app_id(job, extras),
        "fal_request_id": _fal_request_id(job),
    }


def _refine(job: Job, inp: Fields, extras: Fields, urls: list[str]) -> Fields:
    return {
        "face_detail_denoise": extras.get("face_detail_denoise"),
        "face_detail_seed": extras.get("face_detail_seed"),
        "face_detail_steps": extras.get("face_detail_steps"),
        "target_height": inp.get("height"),
        "target_width": inp.get("width"),
        "upscale_denoise": inp.get("denoise"),
        "upscale_factor": extras.get("upscale_factor", inp.get("scale_factor")),
        "upscale_seed": inp.get("seed"),
        "upscale_steps": inp.get("steps"),
        "result_image_path": _first(urls),
        "fal_app_id": _fal_app_id(job, extras),
        "fal_request_id": _fal_request_id(job),
    }


def _detail(job: Job, inp: Fields, extras: Fields, urls: list[str]) -> Fields:
    return {
        "base_image_path": shown(inp.get("image_url")),
        "reference_image_path": shown(inp.get("reference_image_url")),
        "detail_label": inp.get("label"),
        "result_image_path": _first(urls),
    }


def _background_fix(job: Job, inp: Fields, extras: Fields, urls: list[str]) -> Fields:
    return {
        "base_image_path": shown(inp.get("image_url")),
        "palette_image_path": shown(inp.get("palette_image_url")),
        "strategy": inp.get("strategy"),
        "edge_blur_sigma": inp.get("edge_blur_sigma"),
        "light_threshold": inp.get("light_threshold"),
        "shadow_threshold": inp.get("shadow_threshold"),
        "mask_expansion_percentage": inp.get("mask_expansion"),
        "result_image_path": _first(urls),
    }


def _image_adjuster(job: Job, inp: Fields, extras: Fields, urls: list[str]) -> Fields:
    names = ("aspect_ratio", "cropping_position", "mode", "resampling", "scaling_proportions")
    sides = ("target_height", "target_width", "tolerance")
    margins = ("margin_bottom", "margin_left", "margin_right", "margin_top")
    out: Fields = {"input_image_path": shown(inp.get("image_url"))}
    out.update({name: inp.get(name) for name in (*names, *sides, *margins)})
    out["reference_image_path"] = shown(inp.get("reference_image_url"))
    out["result_image_path"] = _first(urls)
    return out


def _face_enhancer(job: Job, inp: Fields, extras: Fields, urls: list[str]) -> Fields:
    return {
        "input_image_path": shown(inp.get("image_url")),
        "attempts_used": len(job.attempts),
        "face_detected": None,  # not known: no model here reports it
        "final_dists_score": None,
        "final_lpips_score": None,
        "final_ssim_score": None,
        "result_image_path": _first(urls),
    }


def _background_removal(job: Job, inp: Fields, extras: Fields, urls: list[str]) -> Fields:
    return {
        "input_image_paths": [shown(u) for u in inp.get("image_urls") or []],
        "result_image_paths": urls or None,
    }


def _llm(job: Job, inp: Fields, extras: Fields, urls: list[str]) -> Fields:
    return {
        "input_images": [shown(u) for u in inp.get("image_urls") or []] or None,
        "input_tokens": None,  # not counted by the gateway
        "output_tokens": None,
        "prompt": inp.get("prompt"),
        "system_prompt": inp.get("system_prompt"),
    }


def _experimental_fal(job: Job, inp: Fields, extras: Fields, urls: list[str]) -> Fields:
    return {
        "fal_app_id": _fal_app_id(job, extras),
        "fal_parameters": dict(inp),
        "fal_request_id": _fal_request_id(job),
        "result_url": _first(urls),
    }


_SPECIFIC: dict[TaskType, Specific] = {
    TaskType.GENERATION: _generation,
    TaskType.VIDEO_GENERATION: _video,
    TaskType.EDITING: _editing,
    TaskType.REFINE: _refine,
    TaskType.DETAIL_ENHANCER: _detail,
    TaskType.BACKGROUND_FIX: _background_fix,
    TaskType.IMAGE_ADJUSTER: _image_adjuster,
    TaskType.FACE_ENHANCER: _face_enhancer,
    TaskType.BACKGROUND_REMOVAL: _background_removal,
    TaskType.LLM_INTERACTION: _llm,
    TaskType.EXPERIMENTAL_FAL: _experimental_fal,
}
