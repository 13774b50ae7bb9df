"""The document's request schemas: one ``Create…Task`` per task type, and the update fields.

They check types and shapes only (lax, as FastAPI does: ``"5"`` is an int); the bounds of
what reaches a model are the kind's (``gateway/kinds.py``), checked when the job is submitted.
Unknown fields are refused (422 ``extra_forbidden``) rather than silently dropped.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field

from gateway.jobs import Status

PRIORITY_RANGE = (-100, 100)  # as the Jobs API: higher runs first


class TaskType(StrEnum):
    GENERATION = "GENERATION"
    VIDEO_GENERATION = "VIDEO_GENERATION"
    EDITING = "EDITING"
    REFINE = "REFINE"
    FACE_ENHANCER = "FACE_ENHANCER"
    BACKGROUND_REMOVAL = "BACKGROUND_REMOVAL"
    DETAIL_ENHANCER = "DETAIL_ENHANCER"
    BACKGROUND_FIX = "BACKGROUND_FIX"
    IMAGE_ADJUSTER = "IMAGE_ADJUSTER"
    LLM_INTERACTION = "LLM_INTERACTION"
    EXPERIMENTAL_FAL = "EXPERIMENTAL_FAL"


#: each task type runs a catalog model of this kind
TASK_KINDS: dict[TaskType, str] = {
    TaskType.GENERATION: "image",
    TaskType.VIDEO_GENERATION: "video",
    TaskType.EDITING: "edit",
    TaskType.REFINE: "refine",
    TaskType.FACE_ENHANCER: "face_enhance",
    TaskType.BACKGROUND_REMOVAL: "background_removal",
    TaskType.DETAIL_ENHANCER: "detail_enhance",
    TaskType.BACKGROUND_FIX: "background_fix",
    TaskType.IMAGE_ADJUSTER: "image_adjust",
    TaskType.LLM_INTERACTION: "llm",
    TaskType.EXPERIMENTAL_FAL: "fal_app",
}
#: the task type a job of each kind shows as (jobs made by the other faces included)
KIND_TASKS: dict[str, TaskType] = {
    **{kind: task for task, kind in TASK_KINDS.items()},
    "upscale": TaskType.REFINE,
    "face_swap": TaskType.EDITING,
}

TASK_STATUS: dict[Status, str] = {
    Status.QUEUED: "PENDING",
    Status.PROCESSING: "RUNNING",
    Status.COMPLETED: "COMPLETED",
    Status.FAILED: "FAILED",
    Status.CANCELLED: "CANCELLED",
}
JOB_STATUS: dict[str, Status] = {v: k for k, v in TASK_STATUS.items()}


def _lower(value: Any) -> Any:
    return value.lower() if isinstance(value, str) else value


#: a provider type; any case is accepted (``FAL``, ``fal``), answers use upper case
ProviderType = Annotated[Literal["sandbox", "fal", "replicate", "local"], BeforeValidator(_lower)]
Text = Annotated[str, Field(max_length=4000)]
Short = Annotated[str, Field(max_length=256)]


class CreateTask(BaseModel):
    """The fields every task type shares."""

    model_config = ConfigDict(extra="forbid")

    priority: int = Field(0, ge=PRIORITY_RANGE[0], le=PRIORITY_RANGE[1])
    config: dict[str, Any] | None = None
    origin_instance: Short = Field(min_length=1)
    origin_zone: Short | None = None
    origin_tenant_id: Short | None = None
    origin_reference: Annotated[str, Field(max_length=1024)] | None = None
    provider_type: ProviderType | None = None
    provider_config: Any = None
    fallback_provider_type: ProviderType | None = None
    fallback_provider_config: Any = None
    active_provider_capabilities: list[Short] | None = None
    fallback_provider_capabilities: list[Short] | None = None
    queue_name: Short | None = None
    webhook_url: str | None = None


class CreateGenerationTask(CreateTask):
    task_type: Literal["GENERATION"]
    prompt: str
    width: int | None = None
    height: int | None = None
    seed: int | None = None
    fal_app_id: Short | None = None
    subject_model_path: Text | None = None
    product_model_path: Text | None = None
    style_model_path: Text | None = None
    product2_model_path: Text | None = None
    subject_lora_weight: float | None = None
    product_lora_weight: float | None = None
    style_lora_weight: float | None = None
    product2_lora_weight: float | None = None
    reference_image_data: str | None = None
    reference_image_url: str | None = None
    reference_image_strength: float | None = Field(None, ge=0, le=100)


class CreateVideoGenerationTask(CreateTask):
    task_type: Literal["VIDEO_GENERATION"]
    prompt: str
    negative_prompt: str | None = None
    duration_seconds: int | None = None
    cfg_scale: float | None = Field(None, ge=0, le=2)
    input_image_data: str | None = None
    input_image_url: str | None = None


class CreateEditingTask(CreateTask):
    task_type: Literal["EDITING"]
    prompt: str
    base_image: str | None = None
    base_image_data: str | None = None
    base_image_url: str | None = None
    reference_images: list[str] | None = None
    reference_image_data: str | None = None
    reference_image_url: str | None = None
    width: int | None = None
    height: int | None = None
    seed: int | None = None
    fal_app_id: Short | None = None
    workflow_id: Short | None = None


class CreateRefineTask(CreateTask):
    task_type: Literal["REFINE"]
    base_image_url: str
    upscale_enabled: bool = True
    upscale_factor: float | None = None
    upscale_prompt: str | None = None
    upscale_seed: int | None = None
    upscale_steps: int | None = None
    upscale_denoise: float | None = None
    face_detail_enabled: bool = False
    face_detail_prompt: str | None = None
    face_detail_seed: int | None = None
    face_detail_steps: int | None = None
    face_detail_denoise: float | None = None
    target_width: int | None = None
    target_height: int | None = None
    fal_app_id: Short | None = None


class CreateDetailEnhancerTask(CreateTask):
    task_type: Literal["DETAIL_ENHANCER"]
    base_image: str
    reference_image: str
    detail_label: str | None = None


class CreateBackgroundFixTask(CreateTask):
    task_type: Literal["BACKGROUND_FIX"]
    base_image: str
    palette_image: str
    strategy: str | None = None
    edge_blur_sigma: float | None = None
    light_threshold: int | None = None
    shadow_threshold: int | None = None
    mask_expansion_percentage: float | None = None


class CreateImageAdjusterTask(CreateTask):
    task_type: Literal["IMAGE_ADJUSTER"]
    input_image: str
    mode: str = "auto"
    aspect_ratio: float | None = None
    target_width: int | None = None
    target_height: int | None = None
    cropping_position: str | None = None
    resampling: str | None = None
    scaling_proportions: str | None = None
    tolerance: float | None = None
    margin_top: float | None = None
    margin_bottom: float | None = None
    margin_left: float | None = None
    margin_right: float | None = None
    reference_image: str | None = None


class CreateFaceEnhancerTask(CreateTask):
    task_type: Literal["FACE_ENHANCER"]
    input_image: str


class CreateBackgroundRemovalTask(CreateTask):
    task_type: Literal["BACKGROUND_REMOVAL"]
    input_image_paths: list[str] = Field(min_length=1)


class CreateLLMInteractionTask(CreateTask):
    task_type: Literal["LLM_INTERACTION"]
    prompt: str
    system_prompt: str | None = None
    input_images: list[str] | None = None


class CreateExperimentalFalTask(CreateTask):
    task_type: Literal["EXPERIMENTAL_FAL"]
    fal_app_id: Short = Field(min_length=1)
    fal_parameters: dict[str, Any] | None = None


CREATE_SCHEMAS: dict[TaskType, type[CreateTask]] = {
    TaskType.GENERATION: CreateGenerationTask,
    TaskType.VIDEO_GENERATION: CreateVideoGenerationTask,
    TaskType.EDITING: CreateEditingTask,
    TaskType.REFINE: CreateRefineTask,
    TaskType.FACE_ENHANCER: CreateFaceEnhancerTask,
    TaskType.BACKGROUND_REMOVAL: CreateBackgroundRemovalTask,
    TaskType.DETAIL_ENHANCER: CreateDetailEnhancerTask,
    TaskType.BACKGROUND_FIX: CreateBackgroundFixTask,
    TaskType.IMAGE_ADJUSTER: CreateImageAdjusterTask,
    TaskType.LLM_INTERACTION: CreateLLMInteractionTask,
    TaskType.EXPERIMENTAL_FAL: CreateExperimentalFalTask,
}

# -- updates (PUT) ----------------------------------------------------------------------------

#: the fields of every ``…TaskPublicUpdate``
PUBLIC_UPDATE = frozenset(
    {"config", "errors", "executor_instance", "executor_type", "priority", "status"}
)
#: the worker-side fields of ``GenerationTaskUpdate`` and ``LLMInteractionTaskPublicUpdate``
_WORKER_FIELDS = frozenset(
    {
        "active_provider_capabilities",
        "celery_task_id",
        "completed_at",
        "created_at",
        "error_category",
        "fallback_provider_capabilities",
        "fallback_provider_config",
        "fallback_provider_type",
        "is_resumed",
        "last_resume_attempt",
        "origin_instance",
        "origin_reference",
        "origin_tenant_id",
        "origin_zone",
        "progress",
        "provider_type",
        "queue_name",
        "resume_attempt_count",
        "retry_count",
        "service_requests",
        "service_task_id",
        "started_at",
        "task_type",
        "updated_at",
    }
)
GENERATION_UPDATE = (
    PUBLIC_UPDATE
    | _WORKER_FIELDS
    | {
        "fal_app_id",
        "fal_request_id",
        "subject_model_path",
        "product_model_path",
        "style_model_path",
        "product2_model_path",
        "subject_lora_weight",
        "product_lora_weight",
        "style_lora_weight",
        "product2_lora_weight",
        "reference_image_path",
        "reference_image_strength",
        "result_image_path",
    }
)
UPDATE_FIELDS: dict[TaskType, frozenset[str]] = {
    **{task: PUBLIC_UPDATE for task in TaskType},
    TaskType.EXPERIMENTAL_FAL: PUBLIC_UPDATE | {"fal_app_id", "fal_parameters"},
    TaskType.LLM_INTERACTION: PUBLIC_UPDATE | _WORKER_FIELDS,
}
#: the fields a client may change; every other update field is the gateway's own (read-only)
WRITABLE = frozenset({"status", "priority", "config", "fal_app_id", "fal_parameters"})


class TaskUpdate(BaseModel):
    """The types of the writable fields (the others are only compared with the task)."""

    model_config = ConfigDict(extra="ignore")

    status: Literal["PENDING", "RUNNING", "COMPLETED", "FAILED", "CANCELLED"] | None = None
    priority: int | None = None
    config: dict[str, Any] | None = None
    fal_app_id: str | None = None
    fal_parameters: dict[str, Any] | None = None
