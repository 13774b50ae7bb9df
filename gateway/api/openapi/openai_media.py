"""The document's OpenAI video and image-edit faces: ``/v1/videos*`` and ``/v1/images/edits``
(``gateway/api/openai_videos.py``, ``openai_edits.py``), errors in OpenAI's envelope.

Both take ``multipart/form-data``, as the ``openai`` SDK sends them (``POST /v1/videos``
also takes the same fields as JSON, ``input_reference`` then ``{"image_url": URL}``).
"""

from __future__ import annotations

from gateway.api.openai_edit_inputs import SHAPES
from gateway.api.openai_video_content import VARIANTS
from gateway.api.openai_video_object import STATUSES
from gateway.api.openapi.components import (
    API_KEY,
    IDEMPOTENCY_KEY,
    INTEGER,
    STRING,
    UNIX_SECONDS,
    Components,
    Schema,
    answer,
    errors,
    header,
    json_body,
    links,
    nullable,
    obj,
)
from gateway.catalog import Catalog
from gateway.kinds import MAX_SEED, MAX_URL_LENGTH

BINARY: Schema = {"type": "string", "format": "binary"}
VIDEO_ID: Schema = {
    "name": "video_id",
    "in": "path",
    "required": True,
    "schema": {**STRING, "examples": ["job-0123456789abcdef01234567"]},
}
PROMPT: Schema = {**STRING, "minLength": 1, "maxLength": 4000}
SIZE: Schema = {
    **STRING,
    "pattern": r"^\d{2,5}x\d{2,5}$",
    "description": "'WIDTHxHEIGHT', within the model's bounds (GET /v1/models).",
}
WEBHOOK_URL: Schema = {
    **STRING,
    "maxLength": MAX_URL_LENGTH,
    "description": "A public http(s) URL: the video's video.completed / video.failed event, "
    "signed with the key's secret (Standard Webhooks; client.webhooks.unwrap verifies it).",
}
DIGITS: Schema = {**STRING, "pattern": "^[0-9]{1,9}$"}


def _models(catalog: Catalog, kinds: set[str]) -> Schema:
    ids = [m.id for m in catalog if m.kind.name in kinds]
    if not ids:
        return {**STRING, "description": "A model of this gateway's catalog."}
    return {**STRING, "enum": ids, "description": "A model of this gateway's catalog."}


def _video(c: Components) -> Schema:
    return c.add(
        "Video",
        obj(
            {
                "id": STRING,
                "object": {"const": "video"},
                "model": STRING,
                "status": {"enum": sorted(set(STATUSES.values()))},
                "progress": {"type": "integer", "minimum": 0, "maximum": 100},
                "created_at": UNIX_SECONDS,
                "completed_at": nullable(UNIX_SECONDS),
                "expires_at": nullable(UNIX_SECONDS),
                "seconds": {**STRING, "description": "The video's length in seconds."},
                "size": {**STRING, "description": "'WIDTHxHEIGHT'."},
                "prompt": nullable(STRING),
                "remixed_from_video_id": nullable(STRING),
                "error": nullable(obj({"code": STRING, "message": STRING}, ("code", "message"))),
            },
            ("id", "object", "model", "status", "progress", "created_at", "seconds", "size"),
            description="OpenAI's Video object; its id is the job's (GET /v1/jobs/{id}).",
        ),
    )


def _create_form(catalog: Catalog) -> Schema:
    return obj(
        {
            "prompt": PROMPT,
            "model": _models(catalog, {"video"}),
            "seconds": {**DIGITS, "description": "The length in seconds, e.g. '4'."},
            "size": SIZE,
            "input_reference": {**BINARY, "description": "The first frame: a PNG/JPEG/WebP/GIF."},
            "negative_prompt": {**STRING, "maxLength": 4000},
            "fps": {**DIGITS, "description": "Frames per second."},
            "seed": {**DIGITS, "description": f"0 to {MAX_SEED}."},
            "user": STRING,
            "webhook_url": WEBHOOK_URL,
        },
        ("prompt",),
        additional=False,
    )


def _edit_form(catalog: Catalog) -> Schema:
    return obj(
        {
            "image": {
                **BINARY,
                "description": "The image to edit (PNG/JPEG/WebP/GIF); several as 'image[]'.",
            },
            "prompt": PROMPT,
            "mask": {**BINARY, "description": "Its fully transparent pixels are edited."},
            "model": _models(catalog, set(SHAPES)),
            "n": {**STRING, "enum": ["1"], "description": "One image per request."},
            "size": SIZE,
            "response_format": {"enum": ["url", "b64_json"]},
            "user": STRING,
            "webhook_url": {
                **STRING,
                "maxLength": MAX_URL_LENGTH,
                "description": "A public http(s) URL for the job's events (as the Jobs API).",
            },
        },
        ("image", "prompt"),
        additional=False,
    )


def openai_media_paths(c: Components, catalog: Catalog) -> dict[str, Schema]:
    video = _video(c)
    video_ops = ("getVideo", "deleteVideo")
    created = answer(
        "The video (queued): poll GET /v1/videos/{id}.",
        video,
        headers={"x-backserv-job-id": header("The job, the same id.")},
        follow=links("video_id", "$response.body#/id", *video_ops),
    )
    common = {"security": API_KEY, "tags": ["OpenAI videos"]}
    image = c.add(
        "ImageData",
        obj({"url": STRING, "b64_json": STRING, "revised_prompt": STRING}, ("revised_prompt",)),
    )
    media = ("video/mp4", "video/webm", "image/gif", "image/webp", "image/jpeg")
    return {
        "/v1/videos": {
            "post": {
                **common,
                "operationId": "createVideo",
                "summary": "OpenAI's video create: a job of kind video, answered at once",
                "parameters": [IDEMPOTENCY_KEY],
                "requestBody": {
                    "required": True,
                    "content": {"multipart/form-data": {"schema": _create_form(catalog)}},
                },
                "responses": {
                    "200": created,
                    **errors("openai", 400, 401, 404, 409, 413, 415, 422, 429, 503),
                },
            },
            "get": {
                **common,
                "operationId": "listVideos",
                "summary": "The key's videos",
                "parameters": [
                    {
                        "name": "limit",
                        "in": "query",
                        "schema": {"type": "integer", "minimum": 1, "maximum": 100, "default": 20},
                    },
                    {"name": "after", "in": "query", "schema": STRING},
                    {"name": "order", "in": "query", "schema": {"enum": ["asc", "desc"]}},
                ],
                "responses": {
                    "200": answer(
                        "A page of videos.",
                        obj(
                            {
                                "object": {"const": "list"},
                                "data": {"type": "array", "items": video},
                                "first_id": nullable(STRING),
                                "last_id": nullable(STRING),
                                "has_more": {"type": "boolean"},
                            },
                            ("object", "data", "has_more"),
                        ),
                    ),
                    **errors("openai", 400, 401),
                },
            },
        },
        "/v1/videos/{video_id}": {
            "get": {
                **common,
                "operationId": "getVideo",
                "summary": "A video (what create_and_poll polls)",
                "parameters": [VIDEO_ID],
                "responses": {
                    "200": answer(
                        "The video.",
                        video,
                        headers={"openai-poll-after-ms": header("When to poll again.", INTEGER)},
                    ),
                    **errors("openai", 401, 404),
                },
            },
            "delete": {
                **common,
                "operationId": "deleteVideo",
                "summary": "Delete a video (cancelled first if it still runs) and its files",
                "parameters": [VIDEO_ID],
                "responses": {
                    "200": answer(
                        "Deleted.",
                        obj(
                            {
                                "id": STRING,
                                "object": {"const": "video.deleted"},
                                "deleted": {"const": True},
                            },
                            ("id", "object", "deleted"),
                        ),
                    ),
                    **errors("openai", 401, 404, 409),
                },
            },
        },
        "/v1/videos/{video_id}/content": {
            "get": {
                **common,
                "operationId": "getVideoContent",
                "summary": "The video's bytes, or a thumbnail or spritesheet drawn from it",
                "parameters": [
                    VIDEO_ID,
                    {"name": "variant", "in": "query", "schema": {"enum": list(VARIANTS)}},
                ],
                "responses": {
                    "200": {
                        "description": "The file: the video in the model's own format, a WebP "
                        "thumbnail or a JPEG spritesheet.",
                        "content": {m: {"schema": BINARY} for m in media},
                    },
                    **errors(
                        "openai",
                        400,
                        401,
                        404,
                        410,
                        notes={400: "Not completed yet, or a variant this video's format has not."},
                    ),
                },
            }
        },
        "/v1/videos/{video_id}/remix": {
            "post": {
                **common,
                "operationId": "remixVideo",
                "summary": "A new video from a completed one's settings, with a new prompt",
                "parameters": [VIDEO_ID, IDEMPOTENCY_KEY],
                "requestBody": json_body(
                    obj(
                        {"prompt": PROMPT, "user": STRING, "webhook_url": WEBHOOK_URL},
                        ("prompt",),
                        additional=False,
                    )
                ),
                "responses": {
                    "200": created,
                    **errors("openai", 400, 401, 404, 413, 415, 422, 429, 503),
                },
            }
        },
        "/v1/images/edits": {
            "post": {
                "security": API_KEY,
                "tags": ["OpenAI images"],
                "operationId": "createImageEdit",
                "summary": "OpenAI's image edit: any model that takes an image; waits for it",
                "description": "Also as JSON, the images as URLs: {'images': [{'image_url'}], "
                "'mask': {'image_url'}}. A job still running after the wait is a 504 with "
                "its id (x-should-retry: false).",
                "parameters": [IDEMPOTENCY_KEY],
                "requestBody": {
                    "required": True,
                    "content": {"multipart/form-data": {"schema": _edit_form(catalog)}},
                },
                "responses": {
                    "200": answer(
                        "The images.",
                        obj(
                            {"created": UNIX_SECONDS, "data": {"type": "array", "items": image}},
                            ("created", "data"),
                        ),
                        headers={"x-backserv-job-id": header("The job that made them.")},
                    ),
                    **errors("openai", 400, 401, 404, 409, 413, 415, 422, 429, 502, 503, 504),
                },
            }
        },
    }
