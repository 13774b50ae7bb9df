"""The Tasks API's objects in the document: each ``…TaskPublic`` answer and the PUT bodies.

The create bodies are the pydantic models of ``gateway/api/tasks/schemas.py``; the answers
are what ``gateway/api/tasks/render.py`` writes: the fields every task has (``COMMON``) and
each task type's own (``SPECIFIC``), every one always present (null when unknown) and no
other, so a field render.py adds without a line here fails the tests that check answers
against the document. The update bodies take their field names from ``schemas.py`` and the
types of the writable ones from its ``TaskUpdate`` model.
"""

from __future__ import annotations

from gateway.api.openapi.components import (
    ANY_OBJECT,
    BOOLEAN,
    INTEGER,
    NUMBER,
    STRING,
    Components,
    Schema,
    nullable,
    obj,
    ref,
)
from gateway.api.tasks.schemas import (
    CREATE_SCHEMAS,
    GENERATION_UPDATE,
    TASK_STATUS,
    UPDATE_FIELDS,
    TaskType,
    TaskUpdate,
)

S, INT, N = nullable(STRING), nullable(INTEGER), nullable(NUMBER)
TIME: Schema = {"type": "string", "format": "date-time"}
STRINGS = nullable({"type": "array", "items": STRING})
ANY: Schema = {}

COMMON: dict[str, Schema] = {
    "task_type": STRING,
    "priority": INTEGER,
    "config": nullable(ANY_OBJECT),
    "origin_instance": STRING,
    "origin_zone": S,
    "origin_tenant_id": S,
    "origin_reference": S,
    "id": {"type": "string", "format": "uuid"},
    "created_at": TIME,
    "updated_at": TIME,
    "status": ref("TaskStatus"),
    "started_at": nullable(TIME),
    "completed_at": nullable(TIME),
    "executor_type": S,
    "executor_instance": S,
    "celery_task_id": S,
    "service_task_id": {**S, "description": "The job id: GET /v1/jobs/{id} shows the job."},
    "provider_type": S,
    "active_provider_capabilities": STRINGS,
    "fallback_provider_type": S,
    "fallback_provider_config": ANY,
    "fallback_provider_capabilities": STRINGS,
    "errors": STRINGS,
    "error_category": nullable(ref("ErrorCategory")),
    "retry_count": INTEGER,
    "progress": {"type": "number", "minimum": 0, "maximum": 100},
    "provider_config": ANY,
    "fallback_used": BOOLEAN,
    "is_deleted": {**BOOLEAN, "description": "The task's files were deleted."},
    "deleted_at": nullable(TIME),
}
_FAL = {"fal_app_id": S, "fal_request_id": S}
_PARTS = ("subject", "product", "style", "product2")
SPECIFIC: dict[TaskType, dict[str, Schema]] = {
    TaskType.GENERATION: {
        **{f"{p}_model_path": S for p in _PARTS},
        **{f"{p}_lora_weight": N for p in _PARTS},
        "workflow_id": S,
        "prompt": S,
        "width": INT,
        "height": INT,
        "seed": INT,
        "result_image_path": S,
        "reference_image_path": S,
        "reference_image_strength": N,
        **_FAL,
    },
    TaskType.VIDEO_GENERATION: {
        "cfg_scale": N,
        "duration_seconds": INT,
        "input_image_path": S,
        "negative_prompt": S,
        "prompt": S,
        "result_video_path": S,
    },
    TaskType.EDITING: {
        "base_image_path": S,
        "height": INT,
        "width": INT,
        "prompt": S,
        "reference_image_path": S,
        "reference_images": STRINGS,
        "result_image_path": S,
        "seed": INT,
        "workflow_id": S,
        **_FAL,
    },
    TaskType.REFINE: {
        "face_detail_denoise": N,
        "face_detail_seed": INT,
        "face_detail_steps": INT,
        "target_height": INT,
        "target_width": INT,
        "upscale_denoise": N,
        "upscale_factor": N,
        "upscale_seed": INT,
        "upscale_steps": INT,
        "result_image_path": S,
        **_FAL,
    },
    TaskType.DETAIL_ENHANCER: {
        "base_image_path": S,
        "reference_image_path": S,
        "detail_label": S,
        "result_image_path": S,
    },
    TaskType.BACKGROUND_FIX: {
        "base_image_path": S,
        "palette_image_path": S,
        "strategy": S,
        "edge_blur_sigma": N,
        "light_threshold": INT,
        "shadow_threshold": INT,
        "mask_expansion_percentage": N,
        "result_image_path": S,
    },
    TaskType.IMAGE_ADJUSTER: {
        "input_image_path": S,
        **{name: S for name in ("cropping_position", "mode", "resampling")},
        "scaling_proportions": S,
        "aspect_ratio": N,
        "target_height": INT,
        "target_width": INT,
        "tolerance": N,
        **{f"margin_{side}": N for side in ("bottom", "left", "right", "top")},
        "reference_image_path": S,
        "result_image_path": S,
    },
    TaskType.FACE_ENHANCER: {
        "input_image_path": S,
        "attempts_used": INTEGER,
        "face_detected": nullable(BOOLEAN),
        "final_dists_score": N,
        "final_lpips_score": N,
        "final_ssim_score": N,
        "result_image_path": S,
    },
    TaskType.BACKGROUND_REMOVAL: {
        "input_image_paths": {"type": "array", "items": STRING},
        "result_image_paths": STRINGS,
    },
    TaskType.LLM_INTERACTION: {
        "input_images": STRINGS,
        "input_tokens": INT,
        "output_tokens": INT,
        "prompt": S,
        "system_prompt": S,
        "result_text": S,
    },
    TaskType.EXPERIMENTAL_FAL: {
        "fal_app_id": S,
        "fal_parameters": ANY_OBJECT,
        "fal_request_id": S,
        "result_url": S,
    },
}

#: the types of the update fields that are the gateway's own (sent back as read, or null)
READ_ONLY: dict[str, Schema] = {
    **{name: S for name in ("executor_type", "executor_instance", "celery_task_id")},
    **{name: S for name in ("service_task_id", "queue_name", "task_type", "provider_type")},
    **{name: S for name in ("fallback_provider_type", "error_category", "fal_request_id")},
    **{f"origin_{name}": S for name in ("instance", "zone", "tenant_id", "reference")},
    **{name: nullable(TIME) for name in ("created_at", "updated_at", "started_at")},
    **{name: nullable(TIME) for name in ("completed_at", "last_resume_attempt")},
    "errors": STRINGS,
    "active_provider_capabilities": STRINGS,
    "fallback_provider_capabilities": STRINGS,
    "fallback_provider_config": ANY,
    "retry_count": INT,
    "resume_attempt_count": INT,
    "progress": N,
    "is_resumed": nullable(BOOLEAN),
    "service_requests": nullable({"type": "array", "items": ANY_OBJECT}),
    **{f"{p}_model_path": S for p in _PARTS},
    **{f"{p}_lora_weight": N for p in _PARTS},
    "reference_image_path": S,
    "reference_image_strength": N,
    "result_image_path": S,
}


def public_name(task_type: TaskType) -> str:
    words = task_type.value.title().replace("_", "")
    return {"LlmInteraction": "LLMInteraction"}.get(words, words) + "TaskPublic"


def task_schemas(c: Components) -> None:
    c.add("TaskStatus", {"type": "string", "enum": list(TASK_STATUS.values())})
    c.add("TaskType", {"type": "string", "enum": [t.value for t in TaskType]})
    c.add(
        "ErrorCategory",
        {"type": "string", "enum": ["VALIDATION", "TIMEOUT", "INTERNAL", "PROVIDER"]},
    )
    for task_type, model in CREATE_SCHEMAS.items():
        c.model(model)
        answer = {**COMMON, "task_type": {"const": task_type.value}, **SPECIFIC[task_type]}
        c.add(public_name(task_type), obj(answer, list(answer), additional=False))
    writable = c.properties_of(TaskUpdate)
    every: frozenset[str] = frozenset().union(*UPDATE_FIELDS.values())
    for name, fields, what in (
        ("TaskPublicUpdate", every, "The fields a task's type has: the others are a 422."),
        ("GenerationTaskUpdate", GENERATION_UPDATE, "A GENERATION task's update."),
    ):
        props = {f: writable.get(f) or READ_ONLY[f] for f in sorted(fields)}
        description = (
            f"{what} Fields sent as null or as the task shows them change nothing; 'status' "
            "may only become CANCELLED (a cancel), 'priority', 'fal_app_id' and "
            "'fal_parameters' change while PENDING (else 409), 'config' is stored; changing any "
            "other field is a 422 (the gateway's own)."
        )
        c.add(name, obj(props, additional=False, description=description))


def task_public(task_type: TaskType | None = None) -> Schema:
    """One type's answer, or (None) any type's."""
    if task_type is not None:
        return ref(public_name(task_type))
    return {"anyOf": [ref(public_name(t)) for t in TaskType]}


def create_body() -> Schema:
    return {"anyOf": [ref(model.__name__) for model in CREATE_SCHEMAS.values()]}
