"""Images sent inline (``data:`` URLs, bare base64) on every face: decoded and checked when
the job is submitted, so a bad one is a 400 (413 over ``BACKSERV_MAX_INPUT_BYTES``) naming
the field, and never becomes a job."""

from __future__ import annotations

import base64
from pathlib import Path

from tests.api.support import assert_error, data_url, png, running
from tests.api.tasks_support import (
    ALICE,
    assert_detail,
    assert_validation_error,
    tasks_server,
)
from tests.conftest import AUTH_A, make_settings, wait_for

ORIGIN = {"origin_instance": "test-suite"}
BMP = base64.b64encode(b"BM" + b"\x00" * 60).decode()


async def test_an_inline_image_runs_and_one_over_the_limit_is_a_413(tmp_path: Path) -> None:
    image = png(40, 30)
    settings = make_settings(tmp_path, max_input_bytes=2048)
    async with running(settings) as (client, _gw):
        ok = await client.post(
            "/v1/jobs",
            json={"model": "sandbox-upscale", "input": {"image_url": data_url(image)}},
            headers=AUTH_A,
        )
        assert ok.status_code == 202, ok.text
        assert (await wait_for(client, ok.json()["id"]))["status"] == "COMPLETED"

        big = data_url(png(400, 300, (1, 2, 3)) + b"\x00" * 4096)
        resp = await client.post(
            "/v1/jobs",
            json={"model": "sandbox-upscale", "input": {"image_url": big}},
            headers=AUTH_A,
        )
        error = assert_error(resp, 413, param="input.image_url", code="input_too_large")
        assert "2048 bytes" in error["message"]
        assert len((await client.get("/v1/jobs", headers=AUTH_A)).json()["jobs"]) == 1


async def test_the_declared_type_must_match_the_content_on_the_images_face(
    tmp_path: Path,
) -> None:
    async with running(make_settings(tmp_path), start_scheduler=False) as (client, _gw):
        jpeg_claim = "data:image/jpeg;base64," + base64.b64encode(png(8, 8)).decode()
        resp = await client.post(
            "/v1/jobs",
            json={
                "model": "sandbox-face-swap",
                "input": {"source_image": data_url(png(8, 8)), "target_image": jpeg_claim},
            },
            headers=AUTH_A,
        )
        error = assert_error(resp, 400, param="input.target_image", code="media_type_mismatch")
        assert "image/jpeg" in error["message"] and "image/png" in error["message"]


async def test_the_backserv_task_face_refuses_a_bad_inline_image_before_queueing(
    tmp_path: Path,
) -> None:
    async with running(make_settings(tmp_path), start_scheduler=False) as (client, gw):
        body = {
            "task_type": "image_upscale",
            "task_params": {"image_url": "data:image/png;base64,AAAA"},
            "user_id": "u",
        }
        resp = await client.post("/submit_task", json=body, headers=AUTH_A)
        assert resp.status_code == 400, resp.text
        assert "task_params.image_url" in resp.text
        assert (await gw.store.list_jobs(None, limit=10))[0] == []


async def test_the_tasks_api_refuses_bad_inline_images_with_its_own_errors(
    tmp_path: Path,
) -> None:
    async with tasks_server(tmp_path, start_scheduler=False, max_input_bytes=2048) as tasks:
        bmp = {"task_type": "FACE_ENHANCER", **ORIGIN, "input_image": BMP}
        resp = await tasks.client.post("/api/v1/tasks/", json=bmp, headers=ALICE)
        (item,) = assert_validation_error(resp, ["body", "input_image"])
        assert "PNG, JPEG, WebP or GIF" in item["msg"]

        lying = {
            "task_type": "FACE_ENHANCER",
            **ORIGIN,
            "input_image": "data:image/gif;base64," + base64.b64encode(png(8, 8)).decode(),
        }
        resp = await tasks.client.post("/api/v1/tasks/", json=lying, headers=ALICE)
        (item,) = assert_validation_error(resp, ["body", "input_image"])
        assert "image/gif" in item["msg"]

        big = {
            "task_type": "FACE_ENHANCER",
            **ORIGIN,
            "input_image": base64.b64encode(b"x" * 4096).decode(),
        }
        resp = await tasks.client.post("/api/v1/tasks/", json=big, headers=ALICE)
        assert "2048 bytes" in assert_detail(resp, 413)

        ok = {
            "task_type": "FACE_ENHANCER",
            **ORIGIN,
            "input_image": base64.b64encode(png(8, 8)).decode(),
        }
        resp = await tasks.client.post("/api/v1/tasks/", json=ok, headers=ALICE)
        assert resp.status_code == 200, resp.text
        assert len((await tasks.gw.store.list_jobs(None, limit=10))[0]) == 1
