"""Helpers of the Tasks API tests: a real server, JWTs, the document's examples, checks."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import hmac
import io
import json
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
from PIL import Image

from gateway.app import Gateway, create_app
from gateway.catalog import Catalog
from tests.conftest import make_settings
from tests.emulators.server import serve

SECRET = "tasks-test-secret-0123456789abcdefghij"
TERMINAL = ("COMPLETED", "FAILED", "CANCELLED")

# -- the examples of the document (../shared/seeds/tasks-api-openapi.txt), copied verbatim --

#: PUT /api/v1/tasks/generation/{task_id}, "Request body" (the document's only request example)
DOC_PUT_GENERATION_REQUEST: dict[str, Any] = json.loads("""{
"status": null,
"priority": null,
"executor_type": null,
"executor_instance": null,
"errors": null,
"config": null,
"created_at": null,
"updated_at": null,
"task_type": null,
"origin_instance": null,
"origin_zone": null,
"origin_tenant_id": null,
"origin_reference": null,
"started_at": null,
"completed_at": null,
"celery_task_id": null,
"service_task_id": null,
"retry_count": null,
"progress": null,
"is_resumed": null,
"provider_type": null,
"active_provider_capabilities": null,
"queue_name": null,
"fallback_provider_type": null,
"fallback_provider_config": null,
"fallback_provider_capabilities": null,
"resume_attempt_count": null,
"last_resume_attempt": null,
"error_category": null,
"service_requests": null,
"fal_app_id": null,
"fal_request_id": null,
"subject_model_path": null,
"product_model_path": null,
"style_model_path": null,
"product2_model_path": null,
"subject_lora_weight": null,
"product_lora_weight": null,
"style_lora_weight": null,
"product2_lora_weight": null,
"reference_image_path": null,
"reference_image_strength": null,
"result_image_path": null
}""")

#: the "Responses" example of PUT and GET /api/v1/tasks/generation/{task_id}, of each item of
#: GET /api/v1/tasks/generation, and of POST /api/v1/tasks/generation/{task_id}/cancel (the
#: four are the same object but for their ``id``); this is the GET one
DOC_GENERATION_TASK: dict[str, Any] = json.loads("""{
"task_type": "string",
"priority": 0,
"config": null,
"origin_instance": "string",
"origin_zone": null,
"origin_tenant_id": null,
"origin_reference": null,
"id": "4db1e3ce-8e8a-484e-bf68-8313a102b3c3",
"created_at": "2022-04-13T15:42:05.901Z",
"updated_at": "2022-04-13T15:42:05.901Z",
"status": "PENDING",
"started_at": null,
"completed_at": null,
"executor_type": null,
"executor_instance": null,
"celery_task_id": null,
"service_task_id": null,
"provider_type": null,
"active_provider_capabilities": null,
"fallback_provider_type": null,
"fallback_provider_config": null,
"fallback_provider_capabilities": null,
"errors": null,
"error_category": null,
"retry_count": 0,
"progress": 10.12,
"provider_config": null,
"subject_model_path": null,
"product_model_path": null,
"style_model_path": null,
"product2_model_path": null,
"subject_lora_weight": null,
"product_lora_weight": null,
"style_lora_weight": null,
"product2_lora_weight": null,
"workflow_id": null,
"prompt": null,
"width": null,
"height": null,
"seed": null,
"result_image_path": null,
"reference_image_path": null,
"reference_image_strength": null,
"fal_app_id": null,
"fal_request_id": null
}""")
#: GenerationTaskPublic's "required" list in the document
DOC_GENERATION_REQUIRED = (
    "priority",
    "origin_instance",
    "id",
    "created_at",
    "updated_at",
    "status",
    "fal_app_id",
    "fal_request_id",
)


def assert_like_document(task: dict[str, Any]) -> None:
    """``task`` has every field of the document's example, with the example's types."""
    missing = set(DOC_GENERATION_TASK) - set(task)
    assert not missing, missing
    for name in DOC_GENERATION_REQUIRED:
        assert name in task, name
    for name, example in DOC_GENERATION_TASK.items():
        if example is not None and task[name] is not None:
            assert isinstance(task[name], type(example)), (name, task[name], example)
    assert str(uuid.UUID(task["id"])) == task["id"]
    assert task["status"] in ("PENDING", "RUNNING", *TERMINAL)
    assert task["created_at"].endswith("Z") and task["updated_at"].endswith("Z")


# -- tokens -----------------------------------------------------------------------------------


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def token(
    claims: dict[str, Any],
    *,
    secret: str = SECRET,
    header: dict[str, Any] | None = None,
    signature: str | None = None,
) -> str:
    head = _b64(json.dumps(header or {"alg": "HS256", "typ": "JWT"}).encode())
    body = _b64(json.dumps(claims).encode())
    mac = hmac.new(secret.encode(), f"{head}.{body}".encode(), hashlib.sha256).digest()
    return f"{head}.{body}.{_b64(mac) if signature is None else signature}"


def auth(sub: str = "alice", **claims: Any) -> dict[str, str]:
    claims = {"sub": sub, "exp": time.time() + 600, **claims}
    return {"Authorization": f"Bearer {token(claims)}"}


ALICE = auth("alice")
BOB = auth("bob")


# -- a running server -------------------------------------------------------------------------


@dataclass
class Tasks:
    client: httpx.AsyncClient
    gw: Gateway
    url: str

    async def create(self, body: dict[str, Any], headers: dict[str, str] = ALICE) -> dict[str, Any]:
        resp = await self.client.post("/api/v1/tasks/", json=body, headers=headers)
        assert resp.status_code == 200, resp.text
        task: dict[str, Any] = resp.json()
        return task

    async def get(self, task_id: str, headers: dict[str, str] = ALICE) -> dict[str, Any]:
        resp = await self.client.get(f"/api/v1/tasks/{task_id}", headers=headers)
        assert resp.status_code == 200, resp.text
        task: dict[str, Any] = resp.json()
        return task

    async def finished(
        self, task_id: str, headers: dict[str, str] = ALICE, timeout: float = 15.0
    ) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while True:
            task = await self.get(task_id, headers)
            if task["status"] in TERMINAL:
                return task
            assert time.monotonic() < deadline, task
            await asyncio.sleep(0.03)

    async def list(self, headers: dict[str, str] = ALICE, **query: Any) -> list[dict[str, Any]]:
        resp = await self.client.get("/api/v1/tasks/", params=query, headers=headers)
        assert resp.status_code == 200, resp.text
        tasks: list[dict[str, Any]] = resp.json()
        return tasks

    async def download(self, url: str) -> httpx.Response:
        """A result URL (made for the public URL) fetched from this server, with no auth."""
        parts = urlsplit(url)
        return await self.client.get(f"{parts.path}?{parts.query}")


@contextlib.asynccontextmanager
async def tasks_server(
    tmp_path: Path,
    *,
    catalog: Catalog | None = None,
    start_scheduler: bool = True,
    **settings: Any,
) -> AsyncIterator[Tasks]:
    """The gateway served by uvicorn on a loopback port, and an HTTP client for it."""
    values: dict[str, Any] = {"tasks_jwt_secret": SECRET, "sandbox_latency": 0.02}
    app = create_app(
        make_settings(tmp_path, **(values | settings)),
        catalog=catalog,
        start_scheduler=start_scheduler,
    )
    async with serve(app) as url, httpx.AsyncClient(base_url=url, timeout=20) as client:
        yield Tasks(client, app.state.gateway, url)


# -- media and checks -------------------------------------------------------------------------


def png_b64(width: int, height: int, colour: tuple[int, int, int] = (200, 30, 30)) -> str:
    out = io.BytesIO()
    Image.new("RGB", (width, height), colour).save(out, format="PNG")
    return base64.b64encode(out.getvalue()).decode()


def image_of(data: bytes) -> Image.Image:
    image = Image.open(io.BytesIO(data))
    image.load()
    return image


def assert_validation_error(resp: httpx.Response, *locs: list[Any]) -> list[dict[str, Any]]:
    """A 422 in the document's HTTPValidationError shape, naming each of ``locs``."""
    assert resp.status_code == 422, resp.text
    body = resp.json()
    assert set(body) == {"detail"} and isinstance(body["detail"], list) and body["detail"], body
    for item in body["detail"]:
        assert set(item) == {"loc", "msg", "type"}, item
        assert isinstance(item["loc"], list) and item["loc"], item
        assert isinstance(item["msg"], str) and item["msg"], item
        assert isinstance(item["type"], str) and item["type"], item
    found = [item["loc"] for item in body["detail"]]
    for loc in locs:
        assert loc in found, (loc, found)
    detail: list[dict[str, Any]] = body["detail"]
    return detail


def assert_detail(resp: httpx.Response, status: int) -> str:
    """An error of ``status`` with the document's ``{"detail": "..."}`` body."""
    assert resp.status_code == status, resp.text
    body = resp.json()
    assert set(body) == {"detail"} and isinstance(body["detail"], str), body
    detail: str = body["detail"]
    return detail
