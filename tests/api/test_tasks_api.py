"""The Tasks API (gateway/api/tasks/, seed: tasks-api-openapi.txt) against a real server.

Every test serves the gateway with uvicorn on a loopback port and talks HTTP to it: the
document's examples, each task type, the filters and paging, PUT, cancel, cleanup and DELETE,
the JWT checks, isolation between owners and tenants, the jobs of the other faces, and
provider choice and fallback through the fal and Replicate emulators.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from gateway.api.tasks.ids import job_id_of, task_id_of
from gateway.app import create_app
from gateway.auth import hash_key, key_id_for
from gateway.catalog import parse_catalog
from gateway.errors import ConfigError
from gateway.jobs import new_job_id
from providers.registry import KNOWN_PROVIDERS
from tests.api.tasks_support import (
    ALICE,
    BOB,
    DOC_GENERATION_TASK,
    DOC_PUT_GENERATION_REQUEST,
    SECRET,
    Tasks,
    assert_detail,
    assert_like_document,
    assert_validation_error,
    auth,
    image_of,
    png_b64,
    tasks_server,
    token,
)
from tests.conftest import AUTH_A, KEY_A, make_settings, wait_for
from tests.emulators.control import EmulatorState
from tests.emulators.fal import create_fal_app
from tests.emulators.replicate import create_replicate_app
from tests.emulators.server import serve

GENERATION = {"task_type": "GENERATION", "prompt": "a fox", "width": 64, "height": 64}
ORIGIN = {"origin_instance": "test-suite"}


def body(**fields: Any) -> dict[str, Any]:
    return {**GENERATION, **ORIGIN, **fields}


@pytest.fixture
async def tasks(tmp_path: Path) -> AsyncIterator[Tasks]:
    async with tasks_server(tmp_path) as server:
        yield server


@pytest.fixture
async def idle(tmp_path: Path) -> AsyncIterator[Tasks]:
    """A server whose scheduler never runs: every task stays PENDING."""
    async with tasks_server(tmp_path, start_scheduler=False) as server:
        yield server


# -- the document's examples ----------------------------------------------------------------


async def test_the_documents_examples_replay_against_a_generation_task(idle: Tasks) -> None:
    created = await idle.create(body())
    path = f"/api/v1/tasks/generation/{created['id']}"

    put = await idle.client.put(path, json=DOC_PUT_GENERATION_REQUEST, headers=ALICE)
    assert put.status_code == 200, put.text
    got = await idle.client.get(path, headers=ALICE)
    listed = await idle.client.get("/api/v1/tasks/generation", headers=ALICE)
    cancelled = await idle.client.post(f"{path}/cancel", headers=ALICE)

    for answer in (put.json(), got.json(), *listed.json(), cancelled.json()):
        assert_like_document(answer)
        assert answer["id"] == created["id"]
    assert put.json()["status"] == got.json()["status"] == "PENDING"  # all-null: no change
    assert cancelled.json()["status"] == "CANCELLED"
    assert set(DOC_GENERATION_TASK) <= set(created)


# -- each task type ---------------------------------------------------------------------------

DATA_URL = "data:image/png;base64," + png_b64(20, 10)

TYPES: dict[str, tuple[dict[str, Any], dict[str, Any]]] = {
    # task type: (the request's fields, fields the finished task shows)
    "GENERATION": (
        {"prompt": "a fox", "width": 64, "height": 64, "subject_model_path": "s3://m/subject"},
        {"prompt": "a fox", "subject_model_path": "s3://m/subject", "size": (64, 64)},
    ),
    "VIDEO_GENERATION": (
        {"prompt": "waves", "duration_seconds": 1, "cfg_scale": 0.5},
        {"duration_seconds": 1, "cfg_scale": 0.5, "format": "GIF"},
    ),
    "EDITING": (
        {
            "prompt": "make it blue",
            "base_image": png_b64(40, 30),
            "reference_images": [png_b64(8, 8)],
            "width": 96,
            "height": 64,
        },
        {"base_image_path": "data:image/png;base64,...", "size": (96, 64)},
    ),
    "REFINE": (
        {"base_image_url": DATA_URL, "upscale_factor": 2, "upscale_steps": 10},
        {"upscale_factor": 2.0, "upscale_steps": 10, "size": (40, 20)},
    ),
    "FACE_ENHANCER": ({"input_image": png_b64(24, 24)}, {"size": (24, 24)}),
    "DETAIL_ENHANCER": (
        {"base_image": png_b64(20, 20), "reference_image": png_b64(10, 10), "detail_label": "logo"},
        {"detail_label": "logo", "size": (20, 20)},
    ),
    "BACKGROUND_FIX": (
        {
            "base_image": png_b64(20, 20, (250, 250, 250)),
            "palette_image": png_b64(4, 4, (0, 0, 255)),
            "light_threshold": 200,
            "shadow_threshold": 100,
        },
        {"light_threshold": 200, "shadow_threshold": 100, "size": (20, 20), "bluer": True},
    ),
    "IMAGE_ADJUSTER": (
        {"input_image": png_b64(80, 40), "mode": "pad", "aspect_ratio": 1.0},
        {"mode": "pad", "aspect_ratio": 1.0, "size": (80, 80)},
    ),
    "BACKGROUND_REMOVAL": (
        {"input_image_paths": [png_b64(16, 16), DATA_URL]},
        {"sizes": [(16, 16), (20, 10)]},
    ),
    "LLM_INTERACTION": (
        {"prompt": "hello there", "system_prompt": "be brief"},
        {"system_prompt": "be brief", "text": "prompt: hello there"},
    ),
    "EXPERIMENTAL_FAL": (  # the sandbox stand-in; the real fal app is tested further down
        {
            "fal_app_id": "fal-ai/any-app",
            "provider_type": "SANDBOX",
            "fal_parameters": {"prompt": "a cat", "image_size": {"width": 96, "height": 64}},
        },
        {"fal_app_id": "fal-ai/any-app", "provider_type": "SANDBOX", "size": (96, 64)},
    ),
}


@pytest.mark.parametrize("task_type", sorted(TYPES))
async def test_each_task_type_runs_to_completion_with_its_result(
    tasks: Tasks, task_type: str
) -> None:
    fields, expected = TYPES[task_type]
    created = await tasks.create({"task_type": task_type, **ORIGIN, **fields})
    assert created["task_type"] == task_type and created["status"] in ("PENDING", "RUNNING")

    task = await tasks.finished(created["id"])

    assert task["status"] == "COMPLETED", task
    assert task["progress"] == 100.0 and task["completed_at"] and task["started_at"]
    for name, value in expected.items():
        if name in task:
            assert task[name] == value, (name, task[name])
    if "text" in expected:
        assert expected["text"] in task["result_text"] and "sandbox" in task["result_text"]
        return
    if "sizes" in expected:
        images = [image_of((await tasks.download(u)).content) for u in task["result_image_paths"]]
        assert [i.size for i in images] == expected["sizes"]
        assert all(i.mode == "RGBA" for i in images)
        return
    url = task.get("result_image_path") or task.get("result_video_path") or task["result_url"]
    download = await tasks.download(url)
    assert download.status_code == 200
    image = image_of(download.content)
    if "format" in expected:
        assert image.format == expected["format"]
    if "size" in expected:
        assert image.size == expected["size"]
    if expected.get("bluer"):
        r, _g, b = image.convert("RGB").getpixel((10, 10))  # type: ignore[misc]
        assert b > r


async def test_image_adjuster_crops_at_the_position_and_resizes_to_the_target(
    tasks: Tasks,
) -> None:
    fields = {
        "task_type": "IMAGE_ADJUSTER",
        "input_image": png_b64(80, 40),
        "mode": "CROP",
        "cropping_position": "left",
        "target_width": 30,
        "target_height": 20,
        "resampling": "nearest",
    }
    task = await tasks.finished((await tasks.create({**fields, **ORIGIN}))["id"])

    assert task["status"] == "COMPLETED", task
    assert (task["mode"], task["target_width"], task["target_height"]) == ("crop", 30, 20)
    assert image_of((await tasks.download(task["result_image_path"])).content).size == (30, 20)


async def test_image_adjuster_margins_need_subject_detection_and_fail_as_validation(
    tasks: Tasks,
) -> None:
    fields = {"input_image": png_b64(8, 8), "aspect_ratio": 2, "margin_top": 0.1}
    created = await tasks.create({"task_type": "IMAGE_ADJUSTER", **ORIGIN, **fields})

    task = await tasks.finished(created["id"])

    assert task["status"] == "FAILED" and task["error_category"] == "VALIDATION", task
    assert "subject detection" in task["errors"][-1]


# -- validation errors ------------------------------------------------------------------------

INVALID: list[tuple[dict[str, Any], list[Any]]] = [
    ({"prompt": "x", **ORIGIN}, ["body", "task_type"]),
    ({"task_type": "PAINTING", **ORIGIN}, ["body", "task_type"]),
    ({"task_type": "GENERATION", **ORIGIN}, ["body", "prompt"]),
    ({"task_type": "GENERATION", "prompt": "x"}, ["body", "origin_instance"]),
    (body(width="wide"), ["body", "width"]),
    (body(colour="red"), ["body", "colour"]),
    (body(width=10), ["body", "width"]),  # the image kind's bound (64..4096)
    (body(priority=1000), ["body", "priority"]),
    (body(provider_type="COMFY"), ["body", "provider_type"]),
    (body(provider_type="LOCAL"), ["body", "provider_type"]),  # no local image model
    (body(webhook_url="http://127.0.0.1:9/hook"), ["body", "webhook_url"]),
    (
        {"task_type": "FACE_ENHANCER", "input_image": "/etc/passwd", **ORIGIN},
        ["body", "input_image"],
    ),
    (
        {"task_type": "EDITING", "prompt": "x", "reference_images": ["ftp://x"], **ORIGIN},
        ["body", "base_image"],
    ),
    (
        {"task_type": "IMAGE_ADJUSTER", "input_image": png_b64(4, 4), "target_width": 5, **ORIGIN},
        ["body", "target_height"],
    ),
    (
        {"task_type": "BACKGROUND_REMOVAL", "input_image_paths": [DATA_URL, "nope"], **ORIGIN},
        ["body", "input_image_paths", 1],
    ),
    (
        {"task_type": "EXPERIMENTAL_FAL", "fal_app_id": "fal-ai/../admin", **ORIGIN},
        ["body", "fal_app_id"],
    ),
]


async def test_invalid_requests_are_422_in_the_documents_validation_shape(idle: Tasks) -> None:
    for request, loc in INVALID:
        resp = await idle.client.post("/api/v1/tasks/", json=request, headers=ALICE)
        assert_validation_error(resp, loc)
    not_json = await idle.client.post(
        "/api/v1/tasks/", content=b"{nope", headers={**ALICE, "content-type": "application/json"}
    )
    assert_validation_error(not_json, ["body"])
    assert_validation_error(await idle.client.post("/api/v1/tasks/", headers=ALICE), ["body"])
    for query, loc in (
        ({"limit": "many"}, ["query", "limit"]),
        ({"skip": -1}, ["query", "skip"]),
        ({"status": "DONE"}, ["query", "status"]),
        ({"task_type": "PAINTING"}, ["query", "task_type"]),
    ):
        resp = await idle.client.get("/api/v1/tasks/", params=query, headers=ALICE)
        assert_validation_error(resp, loc)
    bad_id = await idle.client.get("/api/v1/tasks/not-a-uuid", headers=ALICE)
    assert_validation_error(bad_id, ["path", "task_id"])
    assert await idle.list() == []  # nothing was created


async def test_a_uuid_the_gateway_did_not_make_is_404(idle: Tasks) -> None:
    resp = await idle.client.get(f"/api/v1/tasks/{uuid.uuid4()}", headers=ALICE)
    assert assert_detail(resp, 404) == "Task not found"


async def test_a_newline_in_the_path_is_answered_in_the_documents_shape(idle: Tasks) -> None:
    """Starlette's mount stopped at a newline, so these were the app's OpenAI-shaped 404."""
    for method in ("GET", "PUT", "DELETE"):
        resp = await idle.client.request(method, "/api/v1/tasks/a%0Ab", headers=ALICE)
        assert_validation_error(resp, ["path", "task_id"])
    cancel = await idle.client.post("/api/v1/tasks/a%0Ab/cancel", headers=ALICE)
    assert_validation_error(cancel, ["path", "task_id"])
    # DELETE /api/v1/tasks/{task_id} with a task_id of "~\n/x": no route, the document's 404
    no_route = await idle.client.delete("/api/v1/tasks/~%0A%2Fx", headers=ALICE)
    assert assert_detail(no_route, 404) == "Not Found"


async def test_a_repeated_idempotency_key_replays_the_same_task(idle: Tasks) -> None:
    headers = {**ALICE, "Idempotency-Key": "order-42"}
    first = await idle.client.post("/api/v1/tasks/", json=body(), headers=headers)
    again = await idle.client.post("/api/v1/tasks/", json=body(), headers=headers)

    assert first.status_code == again.status_code == 200
    assert again.json()["id"] == first.json()["id"]
    assert again.headers["Idempotent-Replayed"] == "true"


# -- JWT --------------------------------------------------------------------------------------


async def test_bad_tokens_are_401_with_the_reason(idle: Tasks) -> None:
    now = time.time()
    alice = {"sub": "alice", "exp": now + 60}  # a good token's claims, but for the case's flaw
    unsigned = token(alice, header={"alg": "none", "typ": "JWT"}, signature="")
    cases = {
        "missing": None,
        "not bearer": "Basic YWxpY2U6cHc=",
        "malformed": "Bearer not-a-jwt",
        "garbage parts": "Bearer a.b.c",
        "bad signature": f"Bearer {token(alice, signature='AAAA')}",
        "wrong secret": f"Bearer {token(alice, secret='another-secret-' * 3)}",
        "expired": f"Bearer {token({**alice, 'exp': now - 120})}",
        "not yet valid": f"Bearer {token({**alice, 'nbf': now + 120})}",
        "alg none": f"Bearer {unsigned}",
        "alg HS512": f"Bearer {token(alice, header={'alg': 'HS512'})}",
        "no sub": f"Bearer {token({'exp': now + 60})}",
        "no exp": f"Bearer {token({'sub': 'alice'})}",
    }
    for name, header in cases.items():
        headers = {} if header is None else {"Authorization": header}
        resp = await idle.client.get("/api/v1/tasks/", headers=headers)
        assert_detail(resp, 401)
        assert resp.headers.get("www-authenticate") == "Bearer", name
    expired = await idle.client.get("/api/v1/tasks/", headers=auth(exp=now - 120))
    assert "expired" in assert_detail(expired, 401)
    assert "HS256" in assert_detail(
        await idle.client.get("/api/v1/tasks/", headers={"Authorization": f"Bearer {unsigned}"}),
        401,
    )
    within_leeway = await idle.client.get("/api/v1/tasks/", headers=auth(exp=now - 5))
    assert within_leeway.status_code == 200


async def test_issuer_and_audience_are_checked_when_configured(tmp_path: Path) -> None:
    async with tasks_server(
        tmp_path, start_scheduler=False, tasks_jwt_issuer="auth.example", tasks_jwt_audience="bs"
    ) as server:
        good = auth(iss="auth.example", aud=["other", "bs"])
        assert (await server.client.get("/api/v1/tasks/", headers=good)).status_code == 200
        for bad in (auth(iss="evil", aud="bs"), auth(iss="auth.example", aud="other"), auth()):
            assert_detail(await server.client.get("/api/v1/tasks/", headers=bad), 401)


async def test_without_a_secret_the_tasks_api_answers_503_saying_what_to_set(
    tmp_path: Path,
) -> None:
    async with tasks_server(tmp_path, start_scheduler=False, tasks_jwt_secret=None) as server:
        detail = assert_detail(await server.client.get("/api/v1/tasks/", headers=ALICE), 503)
        assert "BACKSERV_TASKS_JWT_SECRET" in detail


def test_a_short_jwt_secret_is_refused_at_start(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="32 bytes"):
        make_settings(tmp_path, tasks_jwt_secret="short")


# -- owners and tenants ------------------------------------------------------------------------


async def test_another_owners_task_is_404_everywhere(idle: Tasks) -> None:
    task = await idle.create(body())
    path = f"/api/v1/tasks/{task['id']}"

    assert_detail(await idle.client.get(path, headers=BOB), 404)
    assert_detail(await idle.client.post(f"{path}/cancel", headers=BOB), 404)
    assert_detail(await idle.client.post(f"{path}/cleanup", headers=BOB), 404)
    assert_detail(await idle.client.put(path, json={"status": "CANCELLED"}, headers=BOB), 404)
    assert_detail(await idle.client.delete(path, headers=BOB), 404)
    assert await idle.list(BOB) == []
    assert (await idle.get(task["id"]))["status"] == "PENDING"


async def test_a_tenant_token_sees_and_creates_only_its_tenants_tasks(idle: Tasks) -> None:
    acme, zen = auth(tenant="acme"), auth(tenant="zen")
    mine = await idle.create(body(), acme)
    theirs = await idle.create(body(origin_tenant_id="zen"))

    assert mine["origin_tenant_id"] == "acme"  # the token's tenant is the default
    assert [t["id"] for t in await idle.list(acme)] == [mine["id"]]
    assert_detail(await idle.client.get(f"/api/v1/tasks/{theirs['id']}", headers=acme), 404)
    refused = await idle.client.post(
        "/api/v1/tasks/", json=body(origin_tenant_id="zen"), headers=acme
    )
    assert_detail(refused, 403)
    assert_detail(await idle.client.get("/api/v1/tasks/?origin_tenant_id=zen", headers=acme), 403)
    assert [t["id"] for t in await idle.list(zen)] == [theirs["id"]]
    assert len(await idle.list()) == 2  # a token with no tenant sees the owner's every task


async def test_a_providers_claim_limits_the_providers_a_token_may_choose(idle: Tasks) -> None:
    sandbox_only = auth(providers=["sandbox"])

    refused = await idle.client.post(
        "/api/v1/tasks/", json=body(provider_type="FAL"), headers=sandbox_only
    )
    assert "FAL" in assert_detail(refused, 403)
    allowed = await idle.create(body(), sandbox_only)
    assert allowed["provider_type"] == "SANDBOX"


# -- filters and paging -----------------------------------------------------------------------


async def test_every_filter_and_skip_and_limit(idle: Tasks) -> None:
    first = await idle.create(body(origin_instance="a", origin_zone="eu", origin_tenant_id="acme"))
    edit = {"task_type": "EDITING", "prompt": "p", "base_image": png_b64(8, 8), "workflow_id": "w1"}
    second = await idle.create(
        {**edit, "origin_instance": "b", "origin_zone": "us", "origin_tenant_id": "acme"}
    )
    third = await idle.create(body(origin_instance="a", origin_zone="us", origin_tenant_id="other"))
    fourth = await idle.create(
        {"task_type": "LLM_INTERACTION", "prompt": "hi", "origin_instance": "b"}
    )
    cancelled = await idle.client.post(f"/api/v1/tasks/{fourth['id']}/cancel", headers=ALICE)
    assert cancelled.json()["status"] == "CANCELLED"
    ids = {"1": first["id"], "2": second["id"], "3": third["id"], "4": fourth["id"]}

    async def listed(path: str = "/api/v1/tasks/", **query: Any) -> str:
        resp = await idle.client.get(path, params=query, headers=ALICE)
        assert resp.status_code == 200, resp.text
        names = {v: k for k, v in ids.items()}
        return "".join(names[t["id"]] for t in resp.json())

    assert await listed() == "4321"  # newest first
    assert await listed(status="PENDING") == "321"
    assert await listed(status="CANCELLED") == "4"
    assert await listed(status="RUNNING") == ""
    assert await listed(task_type="GENERATION") == "31"
    assert await listed(task_type="LLM_INTERACTION") == "4"
    assert await listed(origin_instance="a") == "31"
    assert await listed(origin_zone="us") == "32"
    assert await listed(origin_tenant_id="acme") == "21"
    assert await listed(task_type="GENERATION", origin_zone="us", status="PENDING") == "3"
    assert await listed(skip=1, limit=2) == "32"
    assert await listed(skip=3) == "1"
    assert await listed(skip=4) == ""
    assert await listed(limit=0) == ""
    assert await listed(task_type="GENERATION", skip=1) == "1"
    assert await listed("/api/v1/tasks/generation") == "31"
    assert await listed("/api/v1/tasks/generation", origin_zone="eu") == "1"
    assert await listed("/api/v1/tasks/generation", workflow_id="w1") == ""  # w1 is an edit
    assert await listed("/api/v1/tasks/generation", skip=1, limit=1) == "1"
    for name, kind in [("skip", "int_parsing"), ("limit", "int_parsing"), ("status", "enum")]:
        for path in ("/api/v1/tasks/", "/api/v1/tasks/generation"):
            resp = await idle.client.get(f"{path}?{name}=", headers=ALICE)  # empty: not absent
            assert resp.status_code == 422, resp.text
            [error] = resp.json()["detail"]
            assert (error["loc"], error["type"]) == (["query", name], kind)
    resp = await idle.client.get("/api/v1/tasks/?task_type=", headers=ALICE)
    assert resp.status_code == 422, resp.text


async def test_task_type_lists_the_other_faces_jobs_of_its_kinds(idle: Tasks) -> None:
    generation = await idle.create(body())
    jobs_api = {"Authorization": f"Bearer {KEY_A}"}
    made = []
    for job in (
        {"model": "sandbox-upscale", "input": {"image_url": DATA_URL, "scale_factor": 2}},
        {"model": "sandbox-image", "input": {"prompt": "a fox"}},
    ):
        resp = await idle.client.post("/v1/jobs", json=job, headers=jobs_api)
        assert resp.status_code == 202, resp.text
        made.append(task_id_of(resp.json()["id"]))
    owner = auth(key_id_for(hash_key(KEY_A)))

    refine = await idle.list(owner, task_type="REFINE")
    generations = await idle.list(owner, task_type="GENERATION")

    assert [t["id"] for t in refine] == [made[0]]  # an upscale job shows as REFINE
    assert [t["id"] for t in generations] == [made[1]]
    assert generation["id"] not in {t["id"] for t in generations}  # alice's, not the key's


# -- cancel and PUT ----------------------------------------------------------------------------


async def test_cancel_of_a_pending_task_and_then_of_a_cancelled_one(idle: Tasks) -> None:
    task = await idle.create(body())
    path = f"/api/v1/tasks/{task['id']}/cancel"

    first = await idle.client.post(path, headers=ALICE)
    again = await idle.client.post(path, headers=ALICE)

    assert first.status_code == 200 and first.json()["status"] == "CANCELLED"
    assert first.json()["completed_at"] is not None
    assert "CANCELLED" in assert_detail(again, 409)


async def test_put_cancels_and_refuses_what_the_document_does_not_let_a_client_change(
    idle: Tasks,
) -> None:
    task = await idle.create(body(priority=3, config={"team": "a"}))
    path = f"/api/v1/tasks/{task['id']}"

    async def put(fields: dict[str, Any], where: str = path) -> Any:
        return await idle.client.put(where, json=fields, headers=ALICE)

    same = await put({"priority": 3, "config": {"team": "a"}, "status": "PENDING", "errors": None})
    assert same.status_code == 200 and same.json()["priority"] == 3  # unchanged values: no-op
    assert_validation_error(await put({"errors": ["boom"]}), ["body", "errors"])
    assert_validation_error(await put({"executor_type": "celery"}), ["body", "executor_type"])
    assert_validation_error(await put({"progress": 50}), ["body", "progress"])  # not here
    gen = f"/api/v1/tasks/generation/{task['id']}"
    assert_validation_error(await put({"progress": 50}, gen), ["body", "progress"])  # read-only
    assert_validation_error(await put({"status": "RUNNING"}), ["body", "status"])
    assert_validation_error(await put({"priority": "high"}), ["body", "priority"])
    reconfigured = await put({"config": {"team": "b"}})
    assert reconfigured.status_code == 200 and reconfigured.json()["config"] == {"team": "b"}
    assert (await idle.get(task["id"]))["config"] == {"team": "b"}
    assert (await idle.get(task["id"]))["status"] == "PENDING"
    raised = await put({"priority": 9})
    assert raised.status_code == 200 and raised.json()["priority"] == 9
    assert (await idle.get(task["id"]))["priority"] == 9

    cancelled = await put({"status": "CANCELLED"})
    assert cancelled.status_code == 200 and cancelled.json()["status"] == "CANCELLED"
    assert (await put({"status": "CANCELLED"})).status_code == 200  # already so: no-op
    assert "QUEUED" in assert_detail(await put({"priority": 1}), 409)  # too late to reorder


async def test_generation_routes_do_not_show_other_task_types(idle: Tasks) -> None:
    llm = await idle.create({"task_type": "LLM_INTERACTION", "prompt": "hi", **ORIGIN})
    path = f"/api/v1/tasks/generation/{llm['id']}"

    assert assert_detail(await idle.client.get(path, headers=ALICE), 404) == (
        "Generation task not found"
    )
    assert_detail(await idle.client.post(f"{path}/cancel", headers=ALICE), 404)
    assert_detail(await idle.client.put(path, json={}, headers=ALICE), 404)


async def test_post_generation_creates_a_generation_task(idle: Tasks) -> None:
    fields = {k: v for k, v in body().items() if k != "task_type"}
    resp = await idle.client.post("/api/v1/tasks/generation", json=fields, headers=ALICE)
    assert resp.status_code == 200 and resp.json()["task_type"] == "GENERATION"
    other = await idle.client.post(
        "/api/v1/tasks/generation", json={**fields, "task_type": "EDITING"}, headers=ALICE
    )
    assert_validation_error(other, ["body", "task_type"])


# -- cleanup and DELETE -----------------------------------------------------------------------


async def test_cleanup_deletes_the_files_and_keeps_the_record_marked(tasks: Tasks) -> None:
    task = await tasks.finished((await tasks.create(body()))["id"])
    url = task["result_image_path"]
    assert (await tasks.download(url)).status_code == 200

    resp = await tasks.client.post(f"/api/v1/tasks/{task['id']}/cleanup", headers=ALICE)

    assert resp.status_code == 200, resp.text
    cleaned = resp.json()
    assert cleaned["is_deleted"] is True and cleaned["deleted_at"] is not None
    assert cleaned["result_image_path"] is None
    assert (await tasks.download(url)).status_code == 410
    kept = await tasks.get(task["id"])
    assert kept["status"] == "COMPLETED" and kept["is_deleted"] is True


async def test_delete_removes_the_files_and_the_record(tasks: Tasks) -> None:
    task = await tasks.finished((await tasks.create(body()))["id"])

    resp = await tasks.client.delete(f"/api/v1/tasks/{task['id']}", headers=ALICE)

    assert resp.status_code == 200 and resp.json()["id"] == task["id"], resp.text
    assert (await tasks.download(task["result_image_path"])).status_code == 410
    job_id = task["service_task_id"]
    assert not (tasks.gw.storage.root / job_id[4:6] / job_id).exists()
    assert_detail(await tasks.client.get(f"/api/v1/tasks/{task['id']}", headers=ALICE), 404)
    assert await tasks.gw.store.get_job(job_id) is None
    listed = (await tasks.client.get("/api/v1/tasks/", headers=ALICE)).json()
    assert task["id"] not in str(listed)


async def test_cleanup_and_delete_of_an_unfinished_task_are_409(idle: Tasks) -> None:
    task = await idle.create(body())
    for method, path in (("POST", "/cleanup"), ("DELETE", "")):
        resp = await idle.client.request(method, f"/api/v1/tasks/{task['id']}{path}", headers=ALICE)
        assert "cancel it first" in assert_detail(resp, 409)


# -- the other faces --------------------------------------------------------------------------


async def test_jobs_of_the_other_faces_are_tasks_and_tasks_are_jobs(tasks: Tasks) -> None:
    same_owner = auth(key_id_for(hash_key(KEY_A)))  # a JWT whose sub is KEY_A's owner id
    job = await tasks.client.post(
        "/v1/jobs/images",
        json={"model": "sandbox-image", "prompt": "from the jobs api", "width": 64, "height": 64},
        headers=AUTH_A,
    )
    assert job.status_code == 202, job.text
    task_id = task_id_of(job.json()["id"])
    assert task_id is not None

    seen = await tasks.finished(task_id, same_owner)
    assert seen["task_type"] == "GENERATION" and seen["status"] == "COMPLETED"
    assert seen["service_task_id"] == job.json()["id"] and seen["prompt"] == "from the jobs api"
    assert seen["origin_instance"] == "backserv"

    created = await tasks.create(body(), same_owner)
    as_job = await wait_for(tasks.client, created["service_task_id"])  # GET /v1/jobs/{id}
    assert as_job["status"] == "COMPLETED" and as_job["model"] == "sandbox-image"
    assert (await tasks.get(created["id"], same_owner))["status"] == "COMPLETED"
    assert_detail(await tasks.client.get(f"/api/v1/tasks/{task_id}", headers=ALICE), 404)


# -- providers: fal and Replicate emulators ----------------------------------------------------

FAL_FLUX = {"provider": "fal", "target": "fal-ai/flux/dev", "options": {"size": "image_size"}}
REPLICATE_FLUX = {
    "provider": "replicate",
    "target": "black-forest-labs/flux-dev",
    "options": {"size": "aspect_ratio"},
    "input_map": {"num_images": "num_outputs"},
}
HOSTED_CATALOG = {
    "models": [
        {
            "id": "sandbox-image",
            "kind": "image",
            "routes": [{"provider": "sandbox", "target": "image"}],
        },
        {"id": "flux", "kind": "image", "routes": [FAL_FLUX, REPLICATE_FLUX]},
        {"id": "flux-fal", "kind": "image", "routes": [FAL_FLUX]},
        {"id": "flux-replicate", "kind": "image", "routes": [REPLICATE_FLUX]},
        {
            "id": "some-fal-app",
            "kind": "fal_app",
            "routes": [{"provider": "fal", "target": "fal-ai/some-app"}],
        },
    ]
}


@dataclass
class Hosted:
    tasks: Tasks
    fal: EmulatorState
    replicate: EmulatorState


@pytest.fixture
async def hosted(tmp_path: Path) -> AsyncIterator[Hosted]:
    fal_app, replicate_app = create_fal_app(), create_replicate_app()
    async with serve(fal_app) as fal_url, serve(replicate_app) as replicate_url:
        catalog = parse_catalog(HOSTED_CATALOG, KNOWN_PROVIDERS, source="hosted-catalog")
        async with tasks_server(
            tmp_path,
            catalog=catalog,
            fal_key="fal-test-key",
            fal_queue_url=fal_url,
            replicate_api_token="r8-test-token",
            replicate_base_url=replicate_url,
            provider_poll_seconds=0.05,
            provider_timeout_seconds=5.0,
            max_route_attempts=2,
            fetch_allow="127.0.0.1",  # the emulators serve their outputs on loopback
        ) as server:
            fal, replicate = fal_app.state.emulator, replicate_app.state.emulator
            fal.configure(latency=0.05)
            replicate.configure(latency=0.05)
            yield Hosted(server, fal, replicate)


async def test_experimental_fal_passes_its_parameters_to_the_fal_app_as_they_are(
    hosted: Hosted,
) -> None:
    params = {"prompt": "a cat", "num_images": 1, "style": {"palette": ["red", "blue"]}}
    created = await hosted.tasks.create(
        {
            "task_type": "EXPERIMENTAL_FAL",
            "fal_app_id": "fal-ai/some-app",
            "fal_parameters": params,
            **ORIGIN,
        }
    )

    task = await hosted.tasks.finished(created["id"])

    assert task["status"] == "COMPLETED", task
    [submit] = hosted.fal.requests("submit")
    assert submit.body == params and submit.path.endswith("/fal-ai/some-app")
    assert task["fal_request_id"] == submit.request_id and task["fal_app_id"] == "fal-ai/some-app"
    assert task["fal_parameters"] == params and task["provider_type"] == "FAL"
    result = await hosted.tasks.download(task["result_url"])  # the gateway's copy
    assert result.status_code == 200 and result.content.startswith(b"\x89PNG")


async def test_without_a_provider_a_task_runs_the_first_model_of_its_kind(hosted: Hosted) -> None:
    task = await hosted.tasks.finished((await hosted.tasks.create(body()))["id"])

    assert task["status"] == "COMPLETED" and task["provider_type"] == "SANDBOX", task
    assert hosted.fal.submit_count(accepted_only=False) == 0
    assert hosted.replicate.submit_count(accepted_only=False) == 0


async def test_provider_override_falls_back_when_the_primary_keeps_failing(
    hosted: Hosted,
) -> None:
    hosted.fal.script("submit", 503, 503)  # max_route_attempts = 2: the retries are spent
    created = await hosted.tasks.create(
        body(provider_type="FAL", fallback_provider_type="REPLICATE")
    )

    task = await hosted.tasks.finished(created["id"])

    assert task["status"] == "COMPLETED", task
    assert (task["provider_type"], task["fallback_provider_type"]) == ("FAL", "REPLICATE")
    assert task["fallback_used"] is True and task["retry_count"] == 2
    assert len(task["errors"]) == 2 and task["error_category"] is None
    assert hosted.fal.submit_count(accepted_only=False) == 2
    assert hosted.replicate.submit_count() == 1


async def test_a_failed_run_on_the_primary_moves_to_the_fallback(hosted: Hosted) -> None:
    hosted.fal.configure(fail_runs=True)
    created = await hosted.tasks.create(
        body(provider_type="FAL", fallback_provider_type="REPLICATE")
    )

    task = await hosted.tasks.finished(created["id"])

    assert task["status"] == "COMPLETED" and task["fallback_used"] is True, task
    assert "CUDA out of memory" in task["errors"][0]
    assert task["fal_request_id"] == hosted.fal.requests("submit")[-1].request_id


async def test_a_primary_with_no_fallback_asked_for_fails_without_one(hosted: Hosted) -> None:
    hosted.fal.configure(fail_runs=True)
    task = await hosted.tasks.finished((await hosted.tasks.create(body(provider_type="fal")))["id"])

    assert task["status"] == "FAILED" and task["error_category"] == "PROVIDER", task
    assert task["fallback_provider_type"] is None and task["fallback_used"] is False
    assert hosted.replicate.submit_count(accepted_only=False) == 0


async def test_input_the_primary_rejects_is_not_retried_on_the_fallback(hosted: Hosted) -> None:
    hosted.fal.script("submit", {"status": 422, "message": "prompt contains a banned word"})
    created = await hosted.tasks.create(
        body(provider_type="FAL", fallback_provider_type="REPLICATE")
    )

    task = await hosted.tasks.finished(created["id"])

    assert task["status"] == "FAILED" and task["error_category"] == "VALIDATION", task
    assert "banned word" in task["errors"][-1]
    assert hosted.replicate.submit_count(accepted_only=False) == 0


async def test_provider_type_and_provider_config_model_choose_the_chain(hosted: Hosted) -> None:
    on_replicate = await hosted.tasks.create(body(provider_type="REPLICATE"))
    named = await hosted.tasks.create(body(provider_config={"model": "flux-replicate"}))

    for created in (on_replicate, named):
        task = await hosted.tasks.finished(created["id"])
        assert task["status"] == "COMPLETED" and task["provider_type"] == "REPLICATE", task
        assert task["fallback_provider_type"] is None
    assert hosted.replicate.submit_count() == 2 and hosted.fal.submit_count() == 0
    wrong = await hosted.tasks.client.post(
        "/api/v1/tasks/", json=body(provider_config={"model": "some-fal-app"}), headers=ALICE
    )
    assert_validation_error(wrong, ["body", "provider_config", "model"])
    no_target = await hosted.tasks.client.post(
        "/api/v1/tasks/",
        json=body(provider_type="REPLICATE", provider_config={"target": "nobody/nothing"}),
        headers=ALICE,
    )
    [problem] = assert_validation_error(no_target, ["body", "provider_config"])
    assert "flux (fal:fal-ai/flux/dev, replicate:" in problem["msg"]  # what the catalog has


async def test_a_chain_the_catalog_lacks_is_composed_of_its_routes_and_falls_back(
    hosted: Hosted,
) -> None:
    hosted.replicate.script("submit", 500, 500, 500)  # the asked primary keeps failing
    created = await hosted.tasks.create(
        body(provider_type="REPLICATE", fallback_provider_type="FAL")
    )

    task = await hosted.tasks.finished(created["id"])

    assert task["status"] == "COMPLETED", task
    assert task["provider_type"] == "REPLICATE" and task["fallback_provider_type"] == "FAL"
    assert task["fallback_used"] is True
    assert hosted.replicate.submit_count() == 0  # every try was refused with a 500
    assert hosted.replicate.submit_count(accepted_only=False) >= 2  # ... and retried
    assert hosted.fal.submit_count() == 1


# -- the catalog ------------------------------------------------------------------------------


async def test_a_task_type_with_no_catalog_model_is_422_naming_the_missing_entry(
    tmp_path: Path,
) -> None:
    catalog = parse_catalog(
        {"models": HOSTED_CATALOG["models"][:1]}, KNOWN_PROVIDERS, source="tiny-catalog"
    )
    async with tasks_server(tmp_path, catalog=catalog, start_scheduler=False) as server:
        resp = await server.client.post(
            "/api/v1/tasks/",
            json={"task_type": "REFINE", "base_image_url": DATA_URL, **ORIGIN},
            headers=ALICE,
        )
        [problem] = assert_validation_error(resp, ["body", "task_type"])
        assert "kind 'refine'" in problem["msg"] and "tiny-catalog" in problem["msg"]
        assert (
            await server.client.post("/api/v1/tasks/", json=body(), headers=ALICE)
        ).status_code == 200


async def test_tasks_models_names_the_model_of_a_task_type(tmp_path: Path) -> None:
    async with tasks_server(
        tmp_path, start_scheduler=False, tasks_models={"GENERATION": "sandbox-image-fast"}
    ) as server:
        task = await server.create(body())
        assert task["service_task_id"].startswith("job-")
        job = await server.gw.store.get_job(task["service_task_id"])
        assert job is not None and job.model == "sandbox-image-fast"


@pytest.mark.parametrize(
    ("models", "message"),
    [
        ({"PAINTING": "sandbox-image"}, "not a task type"),
        ({"GENERATION": "no-such-model"}, "no model .no-such-model. in the catalog"),
        ({"GENERATION": "sandbox-video"}, "is of kind video"),
    ],
)
def test_a_wrong_tasks_models_setting_stops_the_start(
    tmp_path: Path, models: dict[str, str], message: str
) -> None:
    settings = make_settings(tmp_path, tasks_jwt_secret=SECRET, tasks_models=models)
    with pytest.raises(ConfigError, match=message):
        create_app(settings)


def test_task_ids_and_job_ids_map_one_to_one() -> None:
    for _ in range(200):
        job_id = new_job_id()
        task_id = task_id_of(job_id)
        assert task_id is not None
        assert job_id_of(uuid.UUID(task_id)) == job_id
    assert job_id_of(uuid.uuid4()) is None
    assert task_id_of("not-a-job-id") is None
