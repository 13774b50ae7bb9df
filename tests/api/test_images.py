"""The OpenAI face end to end: the real ``openai`` SDK against the gateway on a real socket.

Recent ``openai`` releases ship their own HTTP stack, so respx cannot intercept them: each test
serves the gateway app (with its lifespan: store, scheduler, sandbox provider) with uvicorn on
127.0.0.1 in the test's own event loop and points ``openai.AsyncOpenAI`` at it. One test also
drives the synchronous ``openai.OpenAI`` client from a worker thread.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import io
import time
import tomllib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import openai
import pytest
from PIL import Image

from gateway.catalog import Catalog, parse_catalog
from providers.registry import KNOWN_PROVIDERS
from tests.api.openai_support import Served, serve_gateway
from tests.conftest import KEY_A, KEY_B, ROOT

SANDBOX_IDS = {
    "sandbox-image",
    "sandbox-image-fast",
    "sandbox-video",
    "sandbox-upscale",
    "sandbox-face-swap",
}
JOBS_ONLY = "acme/sandbox-jobs"  # a slash in the id: the SDK percent-encodes it
FAL_ONLY = "fal-only-flux"
BROKEN = "sandbox-broken"
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _catalog() -> Catalog:
    """The shipped catalog plus a jobs-only model, a fal-only model and a failing model."""
    raw: dict[str, Any] = tomllib.loads((ROOT / "catalog.toml").read_text(encoding="utf-8"))
    raw["models"] += [
        {
            "id": JOBS_ONLY,
            "kind": "image",
            "description": "A jobs-only sandbox model.",
            "jobs_only": True,
            "routes": [{"provider": "sandbox", "target": "image", "options": {"latency": 0.0}}],
        },
        {
            "id": FAL_ONLY,
            "kind": "image",
            "description": "Only on fal: unavailable without FAL_KEY.",
            "routes": [
                {
                    "provider": "fal",
                    "target": "fal-ai/flux/schnell",
                    "options": {"size": "image_size"},
                    "input_map": {
                        "steps": "num_inference_steps",
                        "cfg_scale": "",
                        "negative_prompt": "",
                        "sampler": "",
                    },
                }
            ],
        },
        {
            "id": BROKEN,
            "kind": "image",
            "description": "A sandbox model whose every attempt fails.",
            "routes": [
                {
                    "provider": "sandbox",
                    "target": "image",
                    "options": {"latency": 0.0, "failure_rate": 1.0},
                }
            ],
        },
    ]
    return parse_catalog(raw, KNOWN_PROVIDERS, source="test-images.toml")


@contextlib.asynccontextmanager
async def served(tmp_path: Path, **overrides: Any) -> AsyncIterator[Served]:
    """The gateway app (with this module's catalog) on a real loopback socket."""
    async with serve_gateway(tmp_path, _catalog(), **overrides) as s:
        yield s


@pytest.fixture
async def server(tmp_path: Path) -> AsyncIterator[Served]:
    async with served(tmp_path) as s:
        yield s


@pytest.fixture
async def sdk(server: Served) -> AsyncIterator[openai.AsyncOpenAI]:
    async with server.sdk() as client:
        yield client


def open_png(data: bytes) -> Image.Image:
    assert data.startswith(PNG_MAGIC), data[:16]
    image = Image.open(io.BytesIO(data))
    image.load()
    assert image.format == "PNG"
    return image


def request_id(headers: Any) -> str:
    rid = headers.get("x-request-id")
    assert isinstance(rid, str) and rid, dict(headers)
    return rid


def error_of(exc: openai.APIStatusError) -> dict[str, Any]:
    """The unwrapped OpenAI error object; every error also carries x-request-id."""
    request_id(exc.response.headers)
    body = exc.body
    assert isinstance(body, dict), body
    assert {"message", "type", "param", "code"} <= set(body), body
    assert exc.message and body["message"] in exc.message
    return body


async def list_jobs(sdk: openai.AsyncOpenAI) -> list[dict[str, Any]]:
    body = await sdk.get("/jobs", cast_to=object, options={"params": {"limit": 100}})
    assert isinstance(body, dict)
    jobs: list[dict[str, Any]] = body["jobs"]
    return jobs


async def poll_job(sdk: openai.AsyncOpenAI, job_id: str, timeout: float = 10.0) -> dict[str, Any]:
    """``client.get("/jobs/{id}")`` until the job is terminal."""
    deadline = time.monotonic() + timeout
    while True:
        job = await sdk.get(f"/jobs/{job_id}", cast_to=object)
        assert isinstance(job, dict) and job["id"] == job_id, job
        if job["status"] in ("COMPLETED", "FAILED", "CANCELLED"):
            return job
        assert time.monotonic() < deadline, f"job {job_id} stuck in {job['status']}"
        await asyncio.sleep(0.05)


# -- models ----------------------------------------------------------------------------------


async def test_models_list_and_retrieve(sdk: openai.AsyncOpenAI) -> None:
    raw = await sdk.models.with_raw_response.list()
    request_id(raw.headers)
    page = raw.parse()
    models = {m.id: m for m in page.data}
    assert set(models) >= SANDBOX_IDS | {JOBS_ONLY, FAL_ONLY}
    for model in models.values():
        assert model.object == "model"
        assert isinstance(model.created, int)
        assert isinstance(model.owned_by, str) and model.owned_by
    assert models["sandbox-image"].owned_by == "sandbox"

    one = await sdk.models.retrieve("sandbox-image")
    assert one.id == "sandbox-image"
    assert one.object == "model"
    extra = one.model_extra or {}
    assert extra["kind"] == "image"
    assert extra["available"] is True

    slashed = await sdk.models.retrieve(JOBS_ONLY)
    assert slashed.id == JOBS_ONLY
    assert (slashed.model_extra or {})["jobs_only"] is True


async def test_retrieve_unknown_model_is_not_found(sdk: openai.AsyncOpenAI) -> None:
    with pytest.raises(openai.NotFoundError) as info:
        await sdk.models.retrieve("no-such-model")
    assert info.value.status_code == 404
    assert error_of(info.value)["code"] == "model_not_found"


# -- synchronous generation ------------------------------------------------------------------


async def test_generate_url_is_a_downloadable_png_of_the_requested_size(
    server: Served, sdk: openai.AsyncOpenAI
) -> None:
    before = int(time.time())
    raw = await sdk.images.with_raw_response.generate(
        model="sandbox-image",
        prompt="a red fox in the snow",
        size="96x64",
        response_format="url",
        user="user-42",
    )
    request_id(raw.headers)
    job_id = raw.headers["x-backserv-job-id"]
    result = raw.parse()
    assert before <= result.created <= int(time.time()) + 1
    assert result.data is not None and len(result.data) == 1
    [image] = result.data
    assert image.b64_json is None
    assert image.revised_prompt == "a red fox in the snow"
    assert image.url is not None and image.url.startswith(f"{server.url}/files/{job_id}/")

    async with httpx.AsyncClient() as browser:  # no Authorization: the URL is signed
        download = await browser.get(image.url)
    assert download.status_code == 200, download.text
    assert download.headers["content-type"] == "image/png"
    request_id(download.headers)
    assert open_png(download.content).size == (96, 64)

    job = await sdk.get(f"/jobs/{job_id}", cast_to=object)
    assert isinstance(job, dict)
    assert job["status"] == "COMPLETED"
    assert (job["input"]["width"], job["input"]["height"]) == (96, 64)


async def test_generate_b64_json_decodes_to_a_png_of_the_requested_size(
    sdk: openai.AsyncOpenAI,
) -> None:
    result = await sdk.images.generate(
        model="sandbox-image-fast", prompt="a lighthouse", size="64x80", response_format="b64_json"
    )
    assert result.data is not None and len(result.data) == 1
    [image] = result.data
    assert image.url is None
    assert image.revised_prompt == "a lighthouse"
    assert image.b64_json is not None
    assert open_png(base64.b64decode(image.b64_json)).size == (64, 80)


async def test_n_images(sdk: openai.AsyncOpenAI) -> None:
    result = await sdk.images.generate(
        model="sandbox-image-fast", prompt="two owls", n=2, size="64x64", response_format="b64_json"
    )
    assert result.data is not None and len(result.data) == 2
    pngs = [base64.b64decode(item.b64_json or "") for item in result.data]
    for data in pngs:
        assert open_png(data).size == (64, 64)
    assert pngs[0] != pngs[1]  # two images, not one twice
    assert all(item.revised_prompt == "two owls" for item in result.data)

    as_urls = await sdk.images.generate(model="sandbox-image-fast", prompt="two owls", n=2)
    assert as_urls.data is not None and len(as_urls.data) == 2
    assert len({item.url for item in as_urls.data}) == 2


async def test_pass_through_extras_reach_the_job(sdk: openai.AsyncOpenAI) -> None:
    extras = {"seed": 1234, "negative_prompt": "blurry", "steps": 12, "cfg_scale": 5.5}

    async def generate(**extra: Any) -> tuple[bytes, str]:
        raw = await sdk.images.with_raw_response.generate(
            model="sandbox-image-fast",
            prompt="a teapot",
            size="64x64",
            response_format="b64_json",
            extra_body=extra,
        )
        result = raw.parse()
        assert result.data is not None
        return base64.b64decode(result.data[0].b64_json or ""), raw.headers["x-backserv-job-id"]

    first, job_id = await generate(**extras)
    second, _ = await generate(**extras)
    other_seed, _ = await generate(**{**extras, "seed": 4321})
    assert first == second  # the same seed draws the same picture
    assert first != other_seed  # so the seed did reach the provider

    job = await sdk.get(f"/jobs/{job_id}", cast_to=object)
    assert isinstance(job, dict)
    for name, value in extras.items():
        assert job["input"][name] == value, job["input"]
    assert job["result"]["seed"] == 1234


async def test_the_synchronous_client_from_a_thread(server: Served) -> None:
    def use_sync_client() -> tuple[set[str], bytes]:
        with openai.OpenAI(base_url=f"{server.url}/v1", api_key=KEY_A, max_retries=0) as client:
            ids = {m.id for m in client.models.list().data}
            result = client.images.generate(
                model="sandbox-image-fast", prompt="a kite", size="72x64", response_format="url"
            )
            assert result.data is not None
            url = result.data[0].url
            assert url is not None
            return ids, httpx.get(url).content

    ids, data = await asyncio.to_thread(use_sync_client)
    assert ids >= SANDBOX_IDS
    assert open_png(data).size == (72, 64)


# -- the Jobs API through the SDK's generic methods ------------------------------------------


async def test_jobs_only_model_refuses_the_sync_endpoint_and_runs_as_a_job(
    server: Served, sdk: openai.AsyncOpenAI
) -> None:
    with pytest.raises(openai.BadRequestError) as info:
        await sdk.images.generate(model=JOBS_ONLY, prompt="a barn", size="64x64")
    error = error_of(info.value)
    assert "POST /v1/jobs/images" in error["message"]
    assert error["param"] == "model"
    assert error["code"] == "jobs_only_model"
    assert await list_jobs(sdk) == []  # refused before any job was made

    created = await sdk.post(
        "/jobs/images",
        body={"model": JOBS_ONLY, "prompt": "a barn", "width": 64, "height": 64},
        cast_to=object,
    )
    assert isinstance(created, dict)
    assert created["status"] in ("QUEUED", "PROCESSING", "COMPLETED")
    job = await poll_job(sdk, created["id"])
    assert job["status"] == "COMPLETED", job
    assert job["model"] == JOBS_ONLY


async def test_create_and_poll_a_job_with_client_post_and_get(
    server: Served, sdk: openai.AsyncOpenAI
) -> None:
    created = await sdk.post(
        "/jobs/images",
        body={"model": "sandbox-image", "prompt": "a red fox", "width": 80, "height": 64},
        cast_to=object,
    )
    assert isinstance(created, dict)
    assert created["object"] == "job"
    assert created["status"] == "QUEUED"

    job = await poll_job(sdk, created["id"])
    assert job["status"] == "COMPLETED", job
    assert job["progress"] == 100
    [image] = job["result"]["images"]
    assert (image["width"], image["height"]) == (80, 64)
    async with httpx.AsyncClient() as browser:
        assert open_png((await browser.get(image["url"])).content).size == (80, 64)

    # the long-poll works through the SDK too: one GET that answers the finished job
    again = await sdk.get(f"/jobs/{job['id']}", cast_to=object, options={"params": {"wait": 5}})
    assert isinstance(again, dict) and again["status"] == "COMPLETED"


# -- every error class -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fields", "says", "never"),
    [
        # well formed: the message names the side and the bound, not the format
        ({"size": "13x7"}, ["'size'", "width", "64", "13x7"], ["WIDTHxHEIGHT", "'width'"]),
        ({"size": "64x5000"}, ["'size'", "height", "1024"], ["'height'"]),
        # the kind's maximum of num_images (4), under the OpenAI name
        ({"n": 5}, ["'n'", "4"], ["num_images"]),
        ({"size": "big"}, ["'size'", "WIDTHxHEIGHT"], []),
    ],
)
async def test_a_bad_size_or_n_is_explained_in_the_openai_names(
    sdk: openai.AsyncOpenAI, fields: dict[str, Any], says: list[str], never: list[str]
) -> None:
    with pytest.raises(openai.BadRequestError) as info:
        await sdk.images.generate(
            model="sandbox-image-fast", prompt="x", **{"size": "64x64", **fields}
        )
    message = error_of(info.value)["message"]
    assert all(part in message for part in says), message
    assert not any(part in message for part in never), message


@pytest.mark.parametrize(
    ("fields", "param"),
    [
        ({"size": "12by12"}, "size"),
        ({"size": "32x32"}, "size"),  # well formed, but below the kind's minimum width
        ({"n": 0}, "n"),
        ({"n": 5}, "n"),  # above the kind's maximum of num_images
        ({"response_format": "gif"}, "response_format"),
    ],
)
async def test_bad_request_names_the_openai_parameter(
    sdk: openai.AsyncOpenAI, fields: dict[str, Any], param: str
) -> None:
    with pytest.raises(openai.BadRequestError) as info:
        await sdk.images.generate(
            model="sandbox-image-fast", prompt="x", **{"size": "64x64", **fields}
        )
    assert info.value.status_code == 400
    error = error_of(info.value)
    assert error["type"] == "invalid_request_error"
    assert error["param"] == param, error


async def test_unknown_extra_parameter_is_a_bad_request(sdk: openai.AsyncOpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as info:
        await sdk.images.generate(
            model="sandbox-image-fast", prompt="x", size="64x64", extra_body={"flavour": "mint"}
        )
    assert error_of(info.value)["param"] == "flavour"


async def test_bad_api_key_is_an_authentication_error(server: Served) -> None:
    async with server.sdk(api_key="not-a-key") as bad:
        with pytest.raises(openai.AuthenticationError) as info:
            await bad.images.generate(model="sandbox-image-fast", prompt="x", size="64x64")
        assert info.value.status_code == 401
        assert error_of(info.value)["type"] == "authentication_error"
        with pytest.raises(openai.AuthenticationError):
            await bad.models.list()


async def test_unknown_model_and_unknown_job_are_not_found(
    server: Served, sdk: openai.AsyncOpenAI
) -> None:
    with pytest.raises(openai.NotFoundError) as info:
        await sdk.images.generate(model="no-such-model", prompt="x", size="64x64")
    error = error_of(info.value)
    assert (error["param"], error["code"]) == ("model", "model_not_found")

    with pytest.raises(openai.NotFoundError) as info:
        await sdk.get("/jobs/job-000000000000000000000000", cast_to=object)
    assert error_of(info.value)["code"] == "job_not_found"

    # another key's job is not found either
    created = await sdk.post(
        "/jobs/images",
        body={"model": "sandbox-image-fast", "prompt": "x", "width": 64, "height": 64},
        cast_to=object,
    )
    assert isinstance(created, dict)
    async with server.sdk(api_key=KEY_B) as other:
        with pytest.raises(openai.NotFoundError):
            await other.get(f"/jobs/{created['id']}", cast_to=object)


async def test_tampered_file_url_is_permission_denied(sdk: openai.AsyncOpenAI) -> None:
    result = await sdk.images.generate(model="sandbox-image-fast", prompt="x", size="64x64")
    assert result.data is not None and result.data[0].url is not None
    parts = urlsplit(result.data[0].url)
    query = parts.query.replace("sig=", "sig=x")
    with pytest.raises(openai.PermissionDeniedError) as info:
        await sdk.get(f"{parts.scheme}://{parts.netloc}{parts.path}?{query}", cast_to=object)
    assert error_of(info.value)["code"] == "bad_signature"


async def test_idempotency_key_replays_and_reuse_is_unprocessable(sdk: openai.AsyncOpenAI) -> None:
    key = "idem-images-1"
    headers = {"Idempotency-Key": key}
    first = await sdk.images.with_raw_response.generate(
        model="sandbox-image-fast", prompt="a cat", size="64x64", extra_headers=headers
    )
    replay = await sdk.images.with_raw_response.generate(
        model="sandbox-image-fast", prompt="a cat", size="64x64", extra_headers=headers
    )
    assert replay.headers["x-backserv-job-id"] == first.headers["x-backserv-job-id"]
    assert replay.headers.get("idempotent-replayed") == "true"
    assert "idempotent-replayed" not in first.headers

    with pytest.raises(openai.UnprocessableEntityError) as info:
        await sdk.images.generate(
            model="sandbox-image-fast", prompt="a dog", size="64x64", extra_headers=headers
        )
    assert info.value.status_code == 422
    assert error_of(info.value)["code"] == "idempotency_key_reused"
    assert len(await list_jobs(sdk)) == 1


async def test_rate_limit_is_a_rate_limit_error_with_retry_after(tmp_path: Path) -> None:
    async with (
        served(tmp_path, rate_limit_per_second=0.2, rate_limit_burst=1) as server,
        server.sdk() as sdk,
    ):
        await sdk.images.generate(model="sandbox-image-fast", prompt="x", size="64x64")
        with pytest.raises(openai.RateLimitError) as info:
            await sdk.images.generate(model="sandbox-image-fast", prompt="x", size="64x64")
        exc = info.value
        assert exc.status_code == 429
        error = error_of(exc)
        assert (error["type"], error["code"]) == ("rate_limit_error", "rate_limit_exceeded")
        retry_after = int(exc.response.headers["retry-after"])
        assert 1 <= retry_after <= 5  # one token per 5 s

        # the limit is per API key: another key is not affected
        async with server.sdk(api_key=KEY_B) as other:
            await other.images.generate(model="sandbox-image-fast", prompt="x", size="64x64")


async def test_cancelling_a_finished_job_is_a_conflict(sdk: openai.AsyncOpenAI) -> None:
    raw = await sdk.images.with_raw_response.generate(
        model="sandbox-image-fast", prompt="x", size="64x64"
    )
    job_id = raw.headers["x-backserv-job-id"]
    with pytest.raises(openai.ConflictError) as info:
        await sdk.post(f"/jobs/{job_id}/cancel", cast_to=object)
    assert info.value.status_code == 409
    assert error_of(info.value)["code"] == "job_already_finished"


async def test_model_without_credentials_is_unavailable_with_retry_after(
    sdk: openai.AsyncOpenAI,
) -> None:
    with pytest.raises(openai.InternalServerError) as info:
        await sdk.images.generate(model=FAL_ONLY, prompt="x", size="64x64")
    exc = info.value
    assert exc.status_code == 503
    error = error_of(exc)
    assert error["code"] == "model_unavailable"
    assert "FAL_KEY" in error["message"]
    assert int(exc.response.headers["retry-after"]) >= 1
    assert await list_jobs(sdk) == []


async def test_sync_wait_timeout_answers_504_with_the_job_id_and_is_not_retried(
    tmp_path: Path,
) -> None:
    async with (
        served(tmp_path, sync_wait_seconds=0.2, sandbox_latency=1.0) as server,
        server.sdk(max_retries=2) as sdk,  # the SDK's default retry budget
    ):
        idem = {"Idempotency-Key": "slow-1"}
        started = time.monotonic()
        with pytest.raises(openai.InternalServerError) as info:
            await sdk.images.generate(
                model="sandbox-image", prompt="slow", size="64x64", extra_headers=idem
            )
        assert time.monotonic() - started < 0.9  # answered after the sync wait, not the job
        exc = info.value
        assert exc.status_code == 504
        error = error_of(exc)
        assert (error["type"], error["code"]) == ("timeout", "job_still_running")
        job_id = error["job_id"]
        assert job_id in error["message"]
        assert exc.response.headers["x-should-retry"] == "false"
        assert exc.response.headers["location"] == f"/v1/jobs/{job_id}"

        jobs = await list_jobs(sdk)
        assert [j["id"] for j in jobs] == [job_id]  # one job: the SDK did not pay again

        job = await sdk.get(f"/jobs/{job_id}", cast_to=object, options={"params": {"wait": 10}})
        assert isinstance(job, dict)
        assert job["status"] == "COMPLETED", job
        [image] = job["result"]["images"]
        async with httpx.AsyncClient() as browser:
            assert open_png((await browser.get(image["url"])).content).size == (64, 64)

        # the same request with the same Idempotency-Key now answers the finished job's image
        replay = await sdk.images.with_raw_response.generate(
            model="sandbox-image", prompt="slow", size="64x64", extra_headers=idem
        )
        assert replay.headers["x-backserv-job-id"] == job_id
        assert replay.headers["idempotent-replayed"] == "true"
        result = replay.parse()
        assert result.data is not None and result.data[0].url is not None
        assert [j["id"] for j in await list_jobs(sdk)] == [job_id]


async def test_failed_job_answers_502_with_the_job_id_and_is_not_retried(tmp_path: Path) -> None:
    async with (
        served(tmp_path, max_route_attempts=1) as server,
        server.sdk(max_retries=2) as sdk,
    ):
        with pytest.raises(openai.InternalServerError) as info:
            await sdk.images.generate(model=BROKEN, prompt="x", size="64x64")
        exc = info.value
        assert exc.status_code == 502
        error = error_of(exc)
        assert exc.response.headers["x-should-retry"] == "false"
        jobs = await list_jobs(sdk)
        assert [j["id"] for j in jobs] == [error["job_id"]]
        assert jobs[0]["status"] == "FAILED"


async def test_job_cancelled_during_the_sync_wait_is_a_conflict_and_is_not_retried(
    tmp_path: Path,
) -> None:
    async with (
        served(tmp_path, sandbox_latency=1.5) as server,
        server.sdk(max_retries=2) as sdk,  # the SDK's default retry budget; it retries 409
    ):
        call = asyncio.create_task(
            sdk.images.generate(model="sandbox-image", prompt="never mind", size="64x64")
        )
        deadline = time.monotonic() + 5
        while not (jobs := await list_jobs(sdk)):
            assert time.monotonic() < deadline, "the job was never created"
            await asyncio.sleep(0.02)
        [job] = jobs
        await sdk.post(f"/jobs/{job['id']}/cancel", cast_to=object)
        [outcome] = await asyncio.gather(call, return_exceptions=True)
        # a retry of the 409 would submit (and pay for) a new job: the gateway must forbid it
        # with x-should-retry: false, as it does for its 502 and 504
        after = [(j["id"], j["status"]) for j in await list_jobs(sdk)]
        assert after == [(job["id"], "CANCELLED")], f"the SDK resubmitted: {after}"
        assert isinstance(outcome, openai.ConflictError), outcome
        assert error_of(outcome)["code"] == "job_cancelled"
        assert outcome.response.headers.get("x-should-retry") == "false"
