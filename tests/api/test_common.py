"""The answers ``gateway/api/common.py`` renders for the router: a 405 names every method."""

from __future__ import annotations

import httpx
import pytest

from tests.conftest import AUTH_A

TASK = "/api/v1/tasks/0b7f0e3c-3c44-4b5e-9d6a-3f0c1a2b4c5d"
GENERATION_TASK = "/api/v1/tasks/generation/0b7f0e3c-3c44-4b5e-9d6a-3f0c1a2b4c5d"

#: (method, path, the methods the path answers): several routes share each of these paths
SHARED_PATHS = [
    ("PATCH", "/v1/keys", {"GET", "HEAD", "POST"}),
    ("PUT", "/v1/keys/key_0123456789abcdef", {"DELETE", "GET", "HEAD", "PATCH"}),
    ("DELETE", "/v1/jobs", {"GET", "HEAD", "POST"}),
    ("PUT", "/api/v1/tasks/", {"GET", "HEAD", "POST"}),
    ("PATCH", "/api/v1/tasks/generation", {"GET", "HEAD", "POST"}),
    # methods of /api/v1/tasks/{task_id}: "generation" is no task id, so no task's 422 either
    ("PUT", "/api/v1/tasks/generation", {"GET", "HEAD", "POST"}),
    ("DELETE", "/api/v1/tasks/generation", {"GET", "HEAD", "POST"}),
    ("PATCH", TASK, {"DELETE", "GET", "HEAD", "PUT"}),
    ("POST", GENERATION_TASK, {"GET", "HEAD", "PUT"}),
]


def allowed(resp: httpx.Response) -> set[str]:
    assert resp.status_code == 405, resp.text
    return {method.strip() for method in resp.headers["Allow"].split(",")}


@pytest.mark.parametrize(
    ("method", "path", "methods"), SHARED_PATHS, ids=[f"{m} {p}" for m, p, _ in SHARED_PATHS]
)
async def test_a_405_allows_every_method_of_the_path(
    client: httpx.AsyncClient, method: str, path: str, methods: set[str]
) -> None:
    assert allowed(await client.request(method, path, headers=AUTH_A)) == methods


async def test_a_405_of_a_literal_path_does_not_list_the_methods_of_a_templated_one(
    client: httpx.AsyncClient,
) -> None:
    """``/v1/jobs/images`` also fits ``/v1/jobs/{job_id}``, but is never a job: POST only."""
    assert allowed(await client.put("/v1/jobs/images", headers=AUTH_A)) == {"POST"}


async def test_a_405_keeps_each_faces_error_shape(client: httpx.AsyncClient) -> None:
    openai = await client.patch("/v1/keys", headers=AUTH_A)
    assert openai.json()["error"]["code"] == "http_405", openai.text
    tasks = await client.put("/api/v1/tasks/", headers=AUTH_A)
    assert tasks.json() == {"detail": "Method Not Allowed"}, tasks.text
