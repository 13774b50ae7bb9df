"""The Jobs API (gateway/api/jobs.py), pinned to the seed spec jobs-api.md."""

from __future__ import annotations

import asyncio
import base64
import re
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from gateway.catalog import parse_catalog
from providers.registry import KNOWN_PROVIDERS
from tests.api.support import (
    assert_error,
    data_url,
    download,
    open_image,
    png,
    running,
    submit_image,
)
from tests.conftest import AUTH_A, AUTH_B, make_settings, wait_for

JOB_ID = re.compile(r"^job-[0-9a-f]+$")


def is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


async def completed(client: httpx.AsyncClient, job: dict[str, Any]) -> dict[str, Any]:
    body = await wait_for(client, job["id"])
    assert body["status"] == "COMPLETED", body
    return body


async def submit_generic(
    client: httpx.AsyncClient, model: str, job_input: dict[str, Any]
) -> dict[str, Any]:
    resp = await client.post("/v1/jobs", json={"model": model, "input": job_input}, headers=AUTH_A)
    assert resp.status_code == 202, resp.text
    job: dict[str, Any] = resp.json()
    return job


async def list_jobs(client: httpx.AsyncClient, query: str = "") -> dict[str, Any]:
    resp = await client.get(f"/v1/jobs{query}", headers=AUTH_A)
    assert resp.status_code == 200, resp.text
    body: dict[str, Any] = resp.json()
    return body


# -- creating and following a job ------------------------------------------------------------


async def test_image_job_is_accepted_with_id_status_and_location(
    client: httpx.AsyncClient,
) -> None:
    before = int(time.time())
    resp = await client.post(
        "/v1/jobs/images",
        json={"model": "sandbox-image", "prompt": "a red fox", "width": 64, "height": 64},
        headers=AUTH_A,
    )
    assert resp.status_code == 202, resp.text
    job = resp.json()
    assert JOB_ID.match(job["id"]), job["id"]
    assert job["status"] == "QUEUED"
    assert job["model"] == "sandbox-image"
    assert is_int(job["created_at"])
    assert before <= job["created_at"] <= int(time.time())
    assert resp.headers["location"] == f"/v1/jobs/{job['id']}"


async def test_new_job_is_readable_immediately(idle_client: httpx.AsyncClient) -> None:
    job = await submit_image(idle_client)
    resp = await idle_client.get(f"/v1/jobs/{job['id']}", headers=AUTH_A)
    assert resp.status_code == 200, resp.text
    body = resp.json()
    assert body["id"] == job["id"]
    assert body["status"] == "QUEUED"
    assert body["created_at"] == job["created_at"]
    assert body["model"] == "sandbox-image"
    assert "result" not in body


async def test_concurrent_submissions_are_all_stored_and_readable(
    idle_client: httpx.AsyncClient,
) -> None:
    jobs = await asyncio.gather(*(submit_image(idle_client, seed=i) for i in range(25)))
    ids = [job["id"] for job in jobs]
    assert len(set(ids)) == 25
    for job in jobs:
        resp = await idle_client.get(f"/v1/jobs/{job['id']}", headers=AUTH_A)
        assert resp.status_code == 200, resp.text
        assert resp.json()["input"]["seed"] == job["input"]["seed"]
    listed = await list_jobs(idle_client, "?limit=100")
    assert sorted(j["id"] for j in listed["jobs"]) == sorted(ids)


async def test_json_with_a_charset_is_accepted(client: httpx.AsyncClient) -> None:
    resp = await client.post(
        "/v1/jobs/images",
        content=b'{"model": "sandbox-image", "prompt": "x", "width": 64, "height": 64}',
        headers={**AUTH_A, "Content-Type": "application/json; charset=utf-8"},
    )
    assert resp.status_code == 202, resp.text


async def test_image_job_goes_through_processing_to_completed(tmp_path: Path) -> None:
    async with running(make_settings(tmp_path, sandbox_latency=0.6)) as (client, _gw):
        job = await submit_image(client, width=96, height=64)
        running_job = await wait_for(client, job["id"], until=lambda j: j["status"] != "QUEUED")
        assert running_job["status"] == "PROCESSING", running_job
        assert is_int(running_job["started_at"])
        assert running_job["completed_at"] is None
        assert 0 <= running_job["progress"] < 100
        assert "result" not in running_job
        moving = await wait_for(
            client,
            job["id"],
            until=lambda j: j["status"] != "PROCESSING" or j["progress"] > 0,
        )
        assert moving["status"] == "PROCESSING", "progress never rose above 0 while running"
        assert 0 < moving["progress"] < 100

        done = await completed(client, job)
    assert done["progress"] == 100
    assert is_int(done["started_at"]) and is_int(done["completed_at"])
    assert done["created_at"] <= done["started_at"] <= done["completed_at"]
    result = done["result"]
    assert result["url"].startswith("http://testserver/files/")
    assert (result["width"], result["height"]) == (96, 64)
    assert is_int(result["seed"])
    assert result["content_type"] == "image/png"
    assert len(result["images"]) == 1
    assert result["images"][0]["url"] == result["url"]


async def test_width_and_height_default_to_1024(client: httpx.AsyncClient) -> None:
    resp = await client.post(
        "/v1/jobs/images", json={"model": "sandbox-image", "prompt": "a fox"}, headers=AUTH_A
    )
    assert resp.status_code == 202, resp.text
    done = await completed(client, resp.json())
    assert (done["input"]["width"], done["input"]["height"]) == (1024, 1024)
    assert (done["result"]["width"], done["result"]["height"]) == (1024, 1024)


async def test_given_seed_is_echoed_in_result(client: httpx.AsyncClient) -> None:
    done = await completed(client, await submit_image(client, seed=123456789))
    assert done["result"]["seed"] == 123456789


async def test_num_images_two_gives_two_distinct_images(client: httpx.AsyncClient) -> None:
    done = await completed(client, await submit_image(client, num_images=2))
    images = done["result"]["images"]
    assert len(images) == 2
    assert images[0]["url"] != images[1]["url"]
    for image in images:
        assert image["content_type"] == "image/png"
        assert (image["width"], image["height"]) == (64, 64)
        resp = await download(client, image["url"])
        assert resp.status_code == 200
        assert open_image(resp.content).size == (64, 64)


async def test_generic_image_job_completes(client: httpx.AsyncClient) -> None:
    job = await submit_generic(
        client, "sandbox-image", {"prompt": "a lighthouse", "width": 96, "height": 64, "seed": 5}
    )
    assert job["status"] == "QUEUED" and job["kind"] == "image"
    assert JOB_ID.match(job["id"]) and is_int(job["created_at"])
    done = await completed(client, job)
    result = done["result"]
    assert result["content_type"] == "image/png"
    assert (result["width"], result["height"]) == (96, 64)
    assert result["seed"] == 5
    image = open_image((await download(client, result["url"])).content)
    assert (image.format, image.size) == ("PNG", (96, 64))


async def test_generic_video_job_completes_as_gif(client: httpx.AsyncClient) -> None:
    job = await submit_generic(
        client,
        "sandbox-video",
        {"prompt": "waves", "width": 64, "height": 64, "duration": 1, "fps": 2},
    )
    done = await completed(client, job)
    result = done["result"]
    assert result["content_type"] == "image/gif"
    assert (result["width"], result["height"]) == (64, 64)
    assert (result["duration"], result["fps"]) == (1, 2)
    assert [v["url"] for v in result["videos"]] == [result["url"]]
    video = open_image((await download(client, result["url"])).content)
    assert (video.format, video.size) == ("GIF", (64, 64))


async def test_upscale_result_is_input_size_times_scale_factor(client: httpx.AsyncClient) -> None:
    job = await submit_generic(
        client, "sandbox-upscale", {"image_url": data_url(png(40, 30)), "scale_factor": 3}
    )
    done = await completed(client, job)
    result = done["result"]
    assert result["content_type"] == "image/png"
    assert (result["width"], result["height"]) == (120, 90)
    image = open_image((await download(client, result["url"])).content)
    assert (image.format, image.size) == ("PNG", (120, 90))


async def test_face_swap_result_has_the_target_image_size(client: httpx.AsyncClient) -> None:
    job = await submit_generic(
        client,
        "sandbox-face-swap",
        {
            "source_image": data_url(png(50, 50, (240, 200, 160))),
            "target_image": data_url(png(80, 60, (20, 60, 200))),
        },
    )
    done = await completed(client, job)
    result = done["result"]
    assert result["content_type"] == "image/png"
    assert (result["width"], result["height"]) == (80, 60)
    image = open_image((await download(client, result["url"])).content)
    assert (image.format, image.size) == ("PNG", (80, 60))


async def test_an_inline_image_that_is_not_one_is_refused_at_submit(
    client: httpx.AsyncClient,
) -> None:
    not_an_image = "data:image/png;base64," + base64.b64encode(b"hello, world").decode()
    body = {"model": "sandbox-upscale", "input": {"image_url": not_an_image}}
    resp = await client.post("/v1/jobs", json=body, headers=AUTH_A)
    assert_error(resp, 400, param="input.image_url", code="media_type_mismatch")
    assert (await client.get("/v1/jobs", headers=AUTH_A)).json()["jobs"] == []  # no job


async def test_upscale_of_an_image_that_does_not_decode_fails_with_an_error(
    client: httpx.AsyncClient,
) -> None:
    truncated = "data:image/png;base64," + base64.b64encode(b"\x89PNG\r\n\x1a\n...").decode()
    job = await submit_generic(client, "sandbox-upscale", {"image_url": truncated})
    done = await wait_for(client, job["id"])
    assert done["status"] == "FAILED", done
    assert "result" not in done
    assert done["error"]["code"] == "invalid_input"
    assert done["error"]["message"]


async def test_job_for_a_model_no_route_can_run_is_refused_with_the_reason(
    tmp_path: Path,
) -> None:
    route = {"provider": "fal", "target": "fal-ai/flux/schnell"}
    raw = {"models": [{"id": "hosted", "kind": "image", "routes": [route]}]}
    catalog = parse_catalog(raw, KNOWN_PROVIDERS, source="test-catalog")
    async with running(make_settings(tmp_path), catalog=catalog) as (client, _gw):
        resp = await client.post(
            "/v1/jobs/images", json={"model": "hosted", "prompt": "x"}, headers=AUTH_A
        )
        listed = await client.get("/v1/jobs", headers=AUTH_A)
    error = assert_error(resp, 503)
    assert error["code"] == "model_unavailable" and error["param"] == "model"
    assert "FAL_KEY" in error["message"]
    assert resp.headers["retry-after"]
    assert listed.json()["jobs"] == []  # nothing was accepted


# -- listing -------------------------------------------------------------------------------


async def test_list_shows_newest_first_with_spec_fields(idle_client: httpx.AsyncClient) -> None:
    ids = [(await submit_image(idle_client))["id"] for _ in range(3)]
    body = await list_jobs(idle_client)
    assert [j["id"] for j in body["jobs"]] == ids[::-1]
    assert body["has_more"] is False
    for job in body["jobs"]:
        assert job["status"] == "QUEUED"
        assert job["model"] == "sandbox-image"
        assert is_int(job["created_at"])


async def test_list_returns_20_jobs_by_default(idle_client: httpx.AsyncClient) -> None:
    ids = [(await submit_image(idle_client))["id"] for _ in range(21)]
    body = await list_jobs(idle_client)
    assert [j["id"] for j in body["jobs"]] == ids[:0:-1]
    assert body["has_more"] is True


async def test_list_accepts_limit_up_to_100(idle_client: httpx.AsyncClient) -> None:
    await submit_image(idle_client)
    for limit in (1, 100):
        body = await list_jobs(idle_client, f"?limit={limit}")
        assert len(body["jobs"]) == 1


@pytest.mark.parametrize("limit", ["0", "101", "-1", "abc", "2.5"])
async def test_list_rejects_limit_out_of_range(idle_client: httpx.AsyncClient, limit: str) -> None:
    resp = await idle_client.get(f"/v1/jobs?limit={limit}", headers=AUTH_A)
    error = assert_error(resp, 400, param="limit", error_type="invalid_request_error")
    assert "limit" in error["message"]


async def test_list_pages_with_after_cover_every_job_once(idle_client: httpx.AsyncClient) -> None:
    ids = [(await submit_image(idle_client))["id"] for _ in range(5)]
    seen: list[str] = []
    pages: list[bool] = []
    query = "?limit=2"
    while True:
        body = await list_jobs(idle_client, query)
        page = [j["id"] for j in body["jobs"]]
        assert body["first_id"] == page[0] and body["last_id"] == page[-1]
        seen.extend(page)
        pages.append(body["has_more"])
        if not body["has_more"]:
            break
        query = f"?limit=2&after={page[-1]}"
        assert len(pages) < 10, "pagination does not end"
    assert seen == ids[::-1]
    assert pages == [True, True, False]


async def test_list_has_more_is_false_on_an_exactly_full_last_page(
    idle_client: httpx.AsyncClient,
) -> None:
    ids = [(await submit_image(idle_client))["id"] for _ in range(4)]
    first = await list_jobs(idle_client, "?limit=2")
    second = await list_jobs(idle_client, f"?limit=2&after={first['jobs'][-1]['id']}")
    assert [j["id"] for j in second["jobs"]] == [ids[1], ids[0]]
    assert second["has_more"] is False


async def test_list_filters_by_status(idle_client: httpx.AsyncClient) -> None:
    ids = [(await submit_image(idle_client))["id"] for _ in range(3)]
    resp = await idle_client.post(f"/v1/jobs/{ids[1]}/cancel", headers=AUTH_A)
    assert resp.status_code == 200, resp.text
    cancelled = await list_jobs(idle_client, "?status=CANCELLED")
    assert [j["id"] for j in cancelled["jobs"]] == [ids[1]]
    queued = await list_jobs(idle_client, "?status=QUEUED")
    assert [j["id"] for j in queued["jobs"]] == [ids[2], ids[0]]
    assert (await list_jobs(idle_client, "?status=COMPLETED"))["jobs"] == []


async def test_list_filters_by_model(idle_client: httpx.AsyncClient) -> None:
    slow = [(await submit_image(idle_client))["id"] for _ in range(2)]
    fast = (await submit_image(idle_client, model="sandbox-image-fast"))["id"]
    body = await list_jobs(idle_client, "?model=sandbox-image-fast")
    assert [j["id"] for j in body["jobs"]] == [fast]
    body = await list_jobs(idle_client, "?model=sandbox-image")
    assert [j["id"] for j in body["jobs"]] == slow[::-1]


async def test_list_rejects_an_unknown_status(idle_client: httpx.AsyncClient) -> None:
    resp = await idle_client.get("/v1/jobs?status=DONE", headers=AUTH_A)
    assert_error(resp, 400, param="status")


# -- cancelling ----------------------------------------------------------------------------


async def test_cancel_of_queued_job_cancels_it(idle_client: httpx.AsyncClient) -> None:
    job = await submit_image(idle_client)
    resp = await idle_client.post(f"/v1/jobs/{job['id']}/cancel", headers=AUTH_A)
    assert resp.status_code == 200, resp.text
    assert resp.json()["status"] == "CANCELLED"
    body = (await idle_client.get(f"/v1/jobs/{job['id']}", headers=AUTH_A)).json()
    assert body["status"] == "CANCELLED"
    assert "result" not in body


async def test_cancel_of_processing_job_stays_cancelled(tmp_path: Path) -> None:
    latency = 0.6
    async with running(make_settings(tmp_path, sandbox_latency=latency)) as (client, _gw):
        job = await submit_image(client)
        await wait_for(client, job["id"], until=lambda j: j["status"] == "PROCESSING")
        resp = await client.post(f"/v1/jobs/{job['id']}/cancel", headers=AUTH_A)
        assert resp.status_code == 200, resp.text
        assert resp.json()["status"] == "CANCELLED"
        await asyncio.sleep(latency + 0.5)  # past the moment the provider would have finished
        body = (await client.get(f"/v1/jobs/{job['id']}", headers=AUTH_A)).json()
    assert body["status"] == "CANCELLED", body
    assert "result" not in body
    assert body["attempts"][-1]["outcome"] == "cancelled", body["attempts"]


async def test_jobs_cancelled_right_after_submission_stay_cancelled(tmp_path: Path) -> None:
    async with running(make_settings(tmp_path, sandbox_latency=0.2)) as (client, _gw):
        ids = []
        for _ in range(10):
            job = await submit_image(client)
            resp = await client.post(f"/v1/jobs/{job['id']}/cancel", headers=AUTH_A)
            assert resp.status_code == 200, resp.text
            ids.append(job["id"])
        await asyncio.sleep(0.5)  # longer than any of them would have run
        for job_id in ids:
            body = (await client.get(f"/v1/jobs/{job_id}", headers=AUTH_A)).json()
            assert body["status"] == "CANCELLED", body
            assert "result" not in body


async def test_cancel_of_completed_job_is_rejected(client: httpx.AsyncClient) -> None:
    job = await completed(client, await submit_image(client))
    resp = await client.post(f"/v1/jobs/{job['id']}/cancel", headers=AUTH_A)
    assert_error(resp, 409, error_type="conflict_error")
    body = (await client.get(f"/v1/jobs/{job['id']}", headers=AUTH_A)).json()
    assert body["status"] == "COMPLETED"


async def test_cancel_of_cancelled_job_is_rejected(idle_client: httpx.AsyncClient) -> None:
    job = await submit_image(idle_client)
    await idle_client.post(f"/v1/jobs/{job['id']}/cancel", headers=AUTH_A)
    resp = await idle_client.post(f"/v1/jobs/{job['id']}/cancel", headers=AUTH_A)
    assert_error(resp, 409, error_type="conflict_error")


async def test_cancel_of_another_keys_job_is_not_found(idle_client: httpx.AsyncClient) -> None:
    job = await submit_image(idle_client, headers=AUTH_A)
    resp = await idle_client.post(f"/v1/jobs/{job['id']}/cancel", headers=AUTH_B)
    assert_error(resp, 404)
    body = (await idle_client.get(f"/v1/jobs/{job['id']}", headers=AUTH_A)).json()
    assert body["status"] == "QUEUED"


async def test_cancel_of_unknown_job_is_not_found(idle_client: httpx.AsyncClient) -> None:
    resp = await idle_client.post("/v1/jobs/job-000000000000000000000000/cancel", headers=AUTH_A)
    assert_error(resp, 404)


# -- bad input -----------------------------------------------------------------------------

SMALL = {"width": 64, "height": 64}


@pytest.mark.parametrize(
    ("body", "status", "param", "code", "mentions"),
    [
        pytest.param({"prompt": "x"}, 400, "model", None, [], id="missing-model"),
        pytest.param(
            {"model": "no-such-model", "prompt": "x"},
            404,
            "model",
            "model_not_found",
            [],
            id="unknown-model",
        ),
        pytest.param(
            {"model": "sandbox-video", "prompt": "x"}, 400, "model", None, [], id="wrong-kind"
        ),
        pytest.param({"model": "sandbox-image", **SMALL}, 400, "prompt", None, [], id="no-prompt"),
        pytest.param(
            {"model": "sandbox-image", "prompt": "x", "width": 3000, "height": 64},
            400,
            "width",
            None,
            ["width", "2048"],
            id="width-over-model-limit",
        ),
        pytest.param(
            {"model": "sandbox-image-fast", "prompt": "x", "width": 64, "height": 1500},
            400,
            "height",
            None,
            ["height", "1024"],
            id="height-over-model-limit",
        ),
        pytest.param(
            {"model": "sandbox-image", "prompt": "x", "width": "abc"},
            400,
            "width",
            None,
            [],
            id="width-not-int",
        ),
        pytest.param(
            {"model": "sandbox-image", "prompt": 5}, 400, "prompt", None, [], id="prompt-not-string"
        ),
        pytest.param(
            {"model": "sandbox-image", "prompt": "x", "colour": "red"},
            400,
            "colour",
            None,
            ["colour"],
            id="unknown-field",
        ),
        pytest.param(
            {"model": "sandbox-image", "prompt": "x", "priority": "high"},
            400,
            "priority",
            None,
            [],
            id="priority-not-int",
        ),
    ],
)
async def test_bad_image_job_input_is_rejected(
    client: httpx.AsyncClient,
    body: dict[str, Any],
    status: int,
    param: str,
    code: str | None,
    mentions: list[str],
) -> None:
    resp = await client.post("/v1/jobs/images", json=body, headers=AUTH_A)
    error = assert_error(resp, status, param=param, code=code, error_type="invalid_request_error")
    for word in mentions:
        assert word in error["message"], error
    assert (await list_jobs(client))["jobs"] == []


async def test_a_number_with_no_fraction_is_an_integer(client: httpx.AsyncClient) -> None:
    """JSON (and the document's JSON Schema) does not tell 64.0 from 64: both are accepted."""
    job = await submit_image(client, width=64.0, height=64.0, priority=5.0, steps=4.0)
    assert job["priority"] == 5
    assert (job["input"]["width"], job["input"]["steps"]) == (64, 4)
    generic = {"model": "sandbox-image", "input": {"prompt": "x", "width": 64.0}, "priority": 1.0}
    resp = await client.post("/v1/jobs", json=generic, headers=AUTH_A)
    assert resp.status_code == 202, resp.text
    fraction = {"model": "sandbox-image", "prompt": "x", "priority": 1.5}
    assert_error(await client.post("/v1/jobs/images", json=fraction, headers=AUTH_A), 400)


@pytest.mark.parametrize(
    ("body", "status", "param", "mentions"),
    [
        pytest.param({"input": {"prompt": "x"}}, 400, "model", [], id="missing-model"),
        pytest.param({"model": "sandbox-image"}, 400, "input", [], id="missing-input"),
        pytest.param(
            {"model": "sandbox-image", "input": "x"}, 400, "input", [], id="input-not-object"
        ),
        pytest.param(
            {"model": "no-such-model", "input": {"prompt": "x"}},
            404,
            "model",
            [],
            id="unknown-model",
        ),
        pytest.param(
            {"model": "sandbox-image", "input": {"prompt": "x"}, "prompt": "y"},
            400,
            "prompt",
            ["prompt"],
            id="unknown-top-level-field",
        ),
        pytest.param(
            {"model": "sandbox-image", "input": {"prompt": "x", "colour": "red"}},
            400,
            "input.colour",
            ["colour"],
            id="unknown-input-field",
        ),
        pytest.param(
            {"model": "sandbox-image", "input": {"prompt": "x", "width": 3000}},
            400,
            "input.width",
            ["width", "2048"],
            id="width-over-model-limit",
        ),
        pytest.param(
            {
                "model": "sandbox-upscale",
                "input": {"image_url": data_url(png(8, 8)), "scale_factor": 5},
            },
            400,
            "input.scale_factor",
            ["scale_factor", "4"],
            id="scale-over-model-limit",
        ),
        pytest.param(
            {"model": "sandbox-image", "input": {"prompt": "x", "width": "abc"}},
            400,
            "input.width",
            [],
            id="width-not-int",
        ),
        pytest.param(
            {"model": "sandbox-image", "input": {"prompt": 5}},
            400,
            "input.prompt",
            [],
            id="prompt-not-string",
        ),
        pytest.param(
            {"model": "sandbox-image", "input": {"width": 64}},
            400,
            "input.prompt",
            [],
            id="missing-prompt",
        ),
        pytest.param(
            {"model": "sandbox-upscale", "input": {"scale_factor": 2}},
            400,
            "input.image_url",
            [],
            id="missing-image-url",
        ),
        pytest.param(
            {
                "model": "sandbox-face-swap",
                "input": {"source_image": "file:///etc/passwd", "target_image": "ftp://x/y.png"},
            },
            400,
            "input.source_image",
            [],
            id="face-swap-non-http-url",
        ),
    ],
)
async def test_bad_generic_job_input_is_rejected(
    client: httpx.AsyncClient,
    body: dict[str, Any],
    status: int,
    param: str,
    mentions: list[str],
) -> None:
    resp = await client.post("/v1/jobs", json=body, headers=AUTH_A)
    error = assert_error(resp, status, param=param, error_type="invalid_request_error")
    for word in mentions:
        assert word in error["message"], error
    assert (await list_jobs(client))["jobs"] == []


@pytest.mark.parametrize("path", ["/v1/jobs/images", "/v1/jobs"])
@pytest.mark.parametrize(
    "content",
    [
        pytest.param(b"{not json", id="not-json"),
        pytest.param(b'[{"model": "sandbox-image", "prompt": "x"}]', id="json-array"),
        pytest.param(b'"sandbox-image"', id="json-string"),
        pytest.param(b"", id="empty"),
        pytest.param(b"null", id="json-null"),
    ],
)
async def test_body_that_is_not_a_json_object_is_rejected(
    client: httpx.AsyncClient, path: str, content: bytes
) -> None:
    headers = {**AUTH_A, "Content-Type": "application/json"}
    resp = await client.post(path, content=content, headers=headers)
    assert_error(resp, 400, error_type="invalid_request_error")


@pytest.mark.parametrize("path", ["/v1/jobs/images", "/v1/jobs"])
async def test_non_json_content_type_is_unsupported(client: httpx.AsyncClient, path: str) -> None:
    headers = {**AUTH_A, "Content-Type": "text/plain"}
    content = b'{"model": "sandbox-image", "prompt": "x"}'
    resp = await client.post(path, content=content, headers=headers)
    assert_error(resp, 415)


@pytest.fixture
async def small_body_client(tmp_path: Path) -> AsyncIterator[httpx.AsyncClient]:
    settings = make_settings(tmp_path, max_body_bytes=2048)
    async with running(settings, start_scheduler=False) as (client, _gw):
        yield client


async def test_body_over_the_limit_is_too_large(small_body_client: httpx.AsyncClient) -> None:
    body = {"model": "sandbox-image", "prompt": "x" * 3000}
    resp = await small_body_client.post("/v1/jobs/images", json=body, headers=AUTH_A)
    assert_error(resp, 413)


@pytest.mark.parametrize("declared", ["\u00b2".encode("latin-1"), b"9" * 5000])
async def test_a_content_length_that_is_not_plain_digits_is_not_a_crash(
    small_body_client: httpx.AsyncClient, declared: bytes
) -> None:
    """Not a length the gateway can use ("²" passes str.isdigit(), int() refuses it and
    5,000 digits): the body is read, and its real size is what the limit applies to."""
    body = b'{"model": "sandbox-image", "prompt": "' + b"x" * 3000 + b'"}'
    headers = {**AUTH_A, "Content-Type": "application/json", "Content-Length": declared}
    resp = await small_body_client.post("/v1/jobs/images", content=body, headers=headers)
    assert_error(resp, 413)


async def test_streamed_body_over_the_limit_is_too_large(
    small_body_client: httpx.AsyncClient,
) -> None:
    async def chunks() -> AsyncIterator[bytes]:
        yield b'{"model": "sandbox-image", "prompt": "'
        for _ in range(10):
            yield b"x" * 500
        yield b'"}'

    headers = {**AUTH_A, "Content-Type": "application/json"}
    resp = await small_body_client.post("/v1/jobs/images", content=chunks(), headers=headers)
    assert_error(resp, 413)


async def test_unknown_job_id_is_not_found(client: httpx.AsyncClient) -> None:
    for job_id in ("job-000000000000000000000000", "nonsense", "job-%2E%2E"):
        resp = await client.get(f"/v1/jobs/{job_id}", headers=AUTH_A)
        assert_error(resp, 404)


async def test_unknown_route_is_not_found_in_the_envelope(client: httpx.AsyncClient) -> None:
    resp = await client.get("/v1/no-such-thing", headers=AUTH_A)
    assert_error(resp, 404)


async def test_wrong_method_is_rejected_in_the_envelope(client: httpx.AsyncClient) -> None:
    resp = await client.delete("/v1/jobs", headers=AUTH_A)
    assert_error(resp, 405)


ODD_BODIES: list[Any] = [
    {"model": "sandbox-image", "prompt": {"nested": {"deeper": [1, {"x": None}]}}},
    {"model": {"id": "sandbox-image"}, "prompt": "x"},
    {"model": ["sandbox-image"], "input": {"prompt": "x"}},
    {"model": "sandbox-image", "prompt": "x", "width": 10**30},
    {"model": "sandbox-image", "prompt": "x", "seed": 2**64 - 1},
    {"model": "sandbox-image", "prompt": "x", "seed": -(2**63)},
    {"model": "sandbox-image", "prompt": "x", "width": 1e308, "height": -1e308},
    {"model": "sandbox-image", "prompt": "x", "priority": 10**18},
    {"model": "sandbox-image", "prompt": "x", "width": True, "num_images": False},
    {"model": "sandbox-image", "prompt": "x", "width": 64.5},
    {"model": None, "prompt": None, "width": None},
    {"model": "sandbox-image", "prompt": None, "input": None},
    {"model": "sandbox-image", "prompt": "", **SMALL},
    {"model": "sandbox-image", "prompt": "x" * 5000, **SMALL},
    {"model": "sandbox-image", "prompt": "🦊 Füchse 狐狸 \u202e\u0000", **SMALL},
    {"model": "🦊/../../etc/passwd", "prompt": "x"},
    {"model": "sandbox-image", "prompt": "x", "sampler": {"name": "euler"}, **SMALL},
    {"model": "sandbox-image", "input": {"prompt": "x", "width": [64]}},
    {"model": "sandbox-upscale", "input": {"image_url": "data:image/png;base64,%%%"}},
    {"model": "sandbox-video", "input": {"prompt": "x", "duration": 0, "fps": 10**9}},
    {},
]


@pytest.mark.parametrize("path", ["/v1/jobs/images", "/v1/jobs"])
@pytest.mark.parametrize("body", ODD_BODIES)
async def test_odd_bodies_never_cause_a_server_error(
    client: httpx.AsyncClient, path: str, body: Any
) -> None:
    resp = await client.post(path, json=body, headers=AUTH_A)
    assert resp.status_code < 500, resp.text
    if resp.status_code >= 400:
        assert_error(resp, resp.status_code)
    else:
        assert resp.status_code == 202, resp.text
        assert JOB_ID.match(resp.json()["id"])


@pytest.mark.parametrize(
    "content",
    [
        b'{"model": "sandbox-image", "prompt": "\\ud800"}',
        b'{"model": "sandbox-image", "prompt": "x", "width": 1e400}',
        b'{"model": "sandbox-image", "prompt": "x", "seed": 123456789012345678901234567890}',
        b"\xff\xfe{}",
        b'{"model": "sandbox-image", "model": "sandbox-video", "prompt": "x"}',
        b"{" * 10_000,
        b"[" * 10_000 + b"]" * 10_000,
    ],
)
async def test_odd_raw_bytes_never_cause_a_server_error(
    client: httpx.AsyncClient, content: bytes
) -> None:
    headers = {**AUTH_A, "Content-Type": "application/json"}
    resp = await client.post("/v1/jobs/images", content=content, headers=headers)
    assert resp.status_code < 500, resp.text
    if resp.status_code >= 400:
        assert_error(resp, resp.status_code)
