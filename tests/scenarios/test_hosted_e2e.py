"""The gateway end to end against the fal and Replicate emulators over loopback.

Retries, fallback, input rejection, circuit breakers, cancel and Retry-After, with the real
adapters and SDKs; every test also checks that no provider received more submissions than
the jobs' attempt logs account for.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette

from gateway.app import create_app
from gateway.catalog import parse_catalog
from providers.registry import KNOWN_PROVIDERS
from tests.conftest import AUTH_A, make_settings, wait_for
from tests.emulators.control import EmulatorState
from tests.emulators.fal import create_fal_app
from tests.emulators.replicate import create_replicate_app
from tests.emulators.server import serve
from tests.server import free_port

FAL = {"provider": "fal", "target": "fal-ai/flux/dev", "options": {"size": "image_size"}}
REPLICATE = {
    "provider": "replicate",
    "target": "black-forest-labs/flux-dev",
    "options": {"size": "aspect_ratio"},
    "input_map": {"num_images": "num_outputs"},
}
CATALOG = {
    "models": [
        {"id": "flux", "kind": "image", "routes": [FAL, REPLICATE]},
        {"id": "flux-fal-only", "kind": "image", "routes": [FAL]},
        {"id": "flux-replicate", "kind": "image", "routes": [REPLICATE]},
        {
            "id": "flux-bounded",
            "kind": "image",
            "routes": [{**FAL, "options": {**FAL["options"], "timeout_seconds": 1}}, REPLICATE],
        },
    ]
}


@dataclass
class Rig:
    client: httpx.AsyncClient
    app: Starlette
    fal: EmulatorState
    replicate: EmulatorState

    async def submit(self, model: str = "flux", **extra: Any) -> str:
        body = {"model": model, "prompt": "a lighthouse", "width": 64, "height": 64, **extra}
        resp = await self.client.post("/v1/jobs/images", json=body, headers=AUTH_A)
        assert resp.status_code == 202, resp.text
        job_id: str = resp.json()["id"]
        return job_id

    async def finished(self, job_id: str) -> dict[str, Any]:
        return await wait_for(self.client, job_id, timeout=20)

    async def all_jobs(self) -> list[dict[str, Any]]:
        resp = await self.client.get("/v1/jobs?limit=100", headers=AUTH_A)
        jobs: list[dict[str, Any]] = resp.json()["jobs"]
        return jobs


def assert_no_unlogged_submissions(rig: Rig, jobs: list[dict[str, Any]]) -> None:
    """Every submission a provider received is one attempt in exactly one job's log."""
    for name, emulator in (("fal", rig.fal), ("replicate", rig.replicate)):
        attempts = [a for j in jobs for a in j["attempts"] if a["provider"] == name]
        received = emulator.submit_count(accepted_only=False)
        assert received <= len(attempts), (name, received, attempts)
        accepted = [r.request_id for r in emulator.requests("submit") if r.request_id]
        logged = [a["request_id"] for a in attempts if a["request_id"]]
        assert sorted(accepted) == sorted(logged), (name, accepted, logged)


@pytest.fixture
async def rig(tmp_path: Path, request: pytest.FixtureRequest) -> AsyncIterator[Rig]:
    overrides: dict[str, Any] = dict(getattr(request, "param", {}))
    fal_app, replicate_app = create_fal_app(), create_replicate_app()
    async with serve(fal_app) as fal_url, serve(replicate_app) as replicate_url:
        values: dict[str, Any] = {
            "fal_key": "fal-test-key",
            "fal_queue_url": fal_url,
            "replicate_api_token": "r8-test-token",
            "replicate_base_url": replicate_url,
            "provider_poll_seconds": 0.1,
            "provider_timeout_seconds": 5.0,
            "retry_base_seconds": 0.01,
            "max_route_attempts": 3,
            "fetch_allow": "127.0.0.1",  # the emulators serve their outputs on loopback
        }
        settings = make_settings(tmp_path, **(values | overrides))
        catalog = parse_catalog(CATALOG, KNOWN_PROVIDERS, source="test-catalog")
        app = create_app(settings, catalog=catalog)
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as c:
                fal, replicate = fal_app.state.emulator, replicate_app.state.emulator
                fal.configure(latency=0.05)
                replicate.configure(latency=0.05)
                yield Rig(c, app, fal, replicate)


async def test_a_job_on_fal_completes_with_the_output_in_gateway_storage(rig: Rig) -> None:
    job = await rig.finished(await rig.submit())

    assert job["status"] == "COMPLETED", job
    assert job["provider"] == "fal" and job["retry_count"] == 0 and not job["fallback_used"]
    url = job["result"]["url"]
    assert url.startswith("http://testserver/files/")  # the gateway's copy, not fal's CDN
    png = await rig.client.get(url.removeprefix("http://testserver"))
    assert png.status_code == 200 and png.content.startswith(b"\x89PNG")
    [submit] = rig.fal.requests("submit")
    assert submit.body["image_size"] == {"width": 64, "height": 64}
    assert submit.headers.get("authorization") == "Key fal-test-key"
    assert_no_unlogged_submissions(rig, [job])


async def test_each_call_to_a_provider_is_logged_once(
    rig: Rig, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="backserv.http")
    rig.fal.script("submit", 503)  # a retried submit is two calls, each logged once

    job = await rig.finished(await rig.submit())

    assert job["status"] == "COMPLETED", job
    fal_host = rig.app.state.gateway.settings.fal_queue_url
    calls = [r for r in caplog.records if r.name == "backserv.http" and fal_host in str(r.args)]
    logged = [r for r in calls if "/files/" not in str(r.args)]  # not the output's download
    received = rig.fal.requests()  # the queue API's log (the output files are not in it)
    assert len(logged) == len(received) >= 4, (
        [r.getMessage() for r in logged],
        [(r.method, r.route) for r in received],
    )


async def test_a_job_on_replicate_completes(rig: Rig) -> None:
    job = await rig.finished(await rig.submit("flux-replicate", num_images=2))

    assert job["status"] == "COMPLETED", job
    assert job["provider"] == "replicate"
    assert len(job["result"]["images"]) == 2
    for image in job["result"]["images"]:  # Replicate gives no size: read from the file
        assert isinstance(image["width"], int) and isinstance(image["height"], int), image
    [submit] = rig.replicate.requests("submit")
    assert submit.body["input"]["num_outputs"] == 2
    assert submit.body["input"]["aspect_ratio"] == "1:1"
    assert_no_unlogged_submissions(rig, [job])


async def test_primary_answering_500s_then_succeeding_is_retried(rig: Rig) -> None:
    rig.fal.script("submit", 500, 500)

    job = await rig.finished(await rig.submit())

    assert job["status"] == "COMPLETED", job
    assert job["provider"] == "fal" and job["retry_count"] == 2 and not job["fallback_used"]
    assert [a["outcome"] for a in job["attempts"]] == ["failed", "failed", "succeeded"]
    assert rig.fal.submit_count(accepted_only=False) == 3
    assert rig.replicate.submit_count(accepted_only=False) == 0
    assert_no_unlogged_submissions(rig, [job])


@pytest.mark.parametrize(
    "rig", [{"fal_queue_url": f"http://127.0.0.1:{free_port()}"}], indirect=True
)
async def test_primary_that_is_down_falls_back_to_the_other_provider(rig: Rig) -> None:
    job = await rig.finished(await rig.submit())

    assert job["status"] == "COMPLETED", job
    assert job["provider"] == "replicate" and job["fallback_used"] is True
    assert [a["provider"] for a in job["attempts"]] == ["fal", "fal", "fal", "replicate"]
    assert rig.replicate.submit_count() == 1
    assert_no_unlogged_submissions(rig, [job])


@pytest.mark.parametrize(
    "rig",
    [{"fal_queue_url": f"http://127.0.0.1:{free_port()}", "replicate_api_token": None}],
    indirect=True,
)
async def test_fal_unreachable_and_replicate_unconfigured_names_fals_cause_first(rig: Rig) -> None:
    job = await rig.finished(await rig.submit())

    assert job["status"] == "FAILED", job
    error = job["error"]
    assert error["code"] == "provider_transient_error"  # the primary's
    message = error["message"]
    fal_host = rig.app.state.gateway.settings.fal_queue_url.removeprefix("http://")
    fal_part, _, replicate_part = message.partition("replicate:")
    assert fal_host in fal_part and "connect" in fal_part  # fal's real cause, named first
    assert "skipped" in replicate_part and "not configured" in replicate_part
    assert "REPLICATE_API_TOKEN" in replicate_part
    assert "Every route failed" not in message  # Replicate never ran
    assert rig.replicate.submit_count(accepted_only=False) == 0


async def test_input_rejected_by_the_provider_fails_at_once(rig: Rig) -> None:
    rig.fal.script("submit", {"status": 422, "message": "prompt contains a banned word"})

    job = await rig.finished(await rig.submit())

    assert job["status"] == "FAILED", job
    assert job["error"]["code"] == "invalid_input"
    assert "banned word" in job["error"]["message"]
    assert rig.fal.submit_count(accepted_only=False) == 1
    assert rig.replicate.submit_count(accepted_only=False) == 0  # no fallback for bad input
    assert_no_unlogged_submissions(rig, [job])


async def test_a_run_that_fails_at_the_primary_falls_back(rig: Rig) -> None:
    rig.fal.configure(fail_runs=True)

    job = await rig.finished(await rig.submit())

    assert job["status"] == "COMPLETED", job
    assert job["provider"] == "replicate" and job["fallback_used"] is True
    assert_no_unlogged_submissions(rig, [job])


@pytest.mark.parametrize(
    "rig",
    [{"breaker_failure_threshold": 2, "max_route_attempts": 1, "breaker_cooldown_seconds": 60}],
    indirect=True,
)
async def test_breaker_opens_after_repeated_failures_and_later_jobs_skip_the_route(
    rig: Rig,
) -> None:
    rig.fal.script("submit", *([503] * 10))

    first = await rig.finished(await rig.submit())
    second = await rig.finished(await rig.submit())
    third = await rig.finished(await rig.submit())

    for job in (first, second, third):
        assert job["status"] == "COMPLETED" and job["provider"] == "replicate", job
    assert [a["provider"] for a in third["attempts"]] == ["replicate"]  # fal was skipped
    assert rig.fal.submit_count(accepted_only=False) == 2
    model = (await rig.client.get("/v1/models/flux", headers=AUTH_A)).json()
    fal_route = model["routes"][0]
    assert fal_route["circuit"] == "open" and fal_route["available"] is False
    assert model["available"] is True  # the fallback still serves it
    assert_no_unlogged_submissions(rig, [first, second, third])


async def test_cancel_of_a_running_job_reaches_the_provider(rig: Rig) -> None:
    rig.fal.configure(latency=30.0)
    job_id = await rig.submit()
    running = await wait_for(
        rig.client,
        job_id,
        until=lambda j: bool(j["attempts"] and j["attempts"][-1]["request_id"]),
    )
    request_id = running["attempts"][-1]["request_id"]

    resp = await rig.client.post(f"/v1/jobs/{job_id}/cancel", headers=AUTH_A)
    assert resp.status_code == 200 and resp.json()["status"] == "CANCELLED"

    deadline = time.monotonic() + 5
    while not [r for r in rig.fal.requests("cancel") if request_id in r.path]:
        assert time.monotonic() < deadline, "the provider was never told to cancel"
        await asyncio.sleep(0.02)
    # the attempt is closed once the provider answered the cancel
    final = await wait_for(
        rig.client, job_id, until=lambda j: j["attempts"][-1]["outcome"] is not None
    )
    assert final["status"] == "CANCELLED"
    assert final["attempts"][-1]["outcome"] == "cancelled"


async def test_a_hung_primary_is_cancelled_at_its_route_timeout_and_the_fallback_runs(
    rig: Rig,
) -> None:
    rig.fal.configure(latency=3600.0)  # accepted, and never finishes

    job = await rig.finished(await rig.submit("flux-bounded"))

    assert job["status"] == "COMPLETED", job
    assert job["provider"] == "replicate" and job["fallback_used"] is True
    hung = job["attempts"][0]
    assert hung["provider"] == "fal" and hung["error"]["code"] == "route_timeout"
    assert [r for r in rig.fal.requests("cancel") if hung["request_id"] in r.path]
    assert rig.fal.submit_count(accepted_only=False) == 1  # cancelled, not retried
    assert_no_unlogged_submissions(rig, [job])


async def test_retry_after_from_the_provider_is_honoured(rig: Rig) -> None:
    rig.fal.script("submit", {"status": 429, "retry_after": 1})

    job = await rig.finished(await rig.submit())

    assert job["status"] == "COMPLETED" and job["retry_count"] == 1, job
    first, second = rig.fal.requests("submit")
    assert second.time - first.time >= 1.0
    assert_no_unlogged_submissions(rig, [job])


@pytest.mark.parametrize("rig", [{"provider_timeout_seconds": 1.0}], indirect=True)
async def test_a_submit_that_times_out_after_sending_is_never_repeated(rig: Rig) -> None:
    rig.fal.script("submit", {"kind": "timeout", "hang_seconds": 4})

    job = await rig.finished(await rig.submit())

    assert job["status"] == "FAILED", job
    assert job["error"]["code"] == "provider_submit_uncertain"
    assert rig.fal.submit_count(accepted_only=False) == 1
    assert rig.replicate.submit_count(accepted_only=False) == 0


async def test_many_jobs_with_flaky_providers_never_submit_more_than_logged(rig: Rig) -> None:
    rig.fal.script("submit", 500, 503, "ok", 500, 429, "ok", 502)
    rig.replicate.script("submit", 500, "ok", 503)
    ids = [await rig.submit() for _ in range(12)]

    jobs = [await rig.finished(job_id) for job_id in ids]

    assert all(j["status"] == "COMPLETED" for j in jobs), [j["status"] for j in jobs]
    assert_no_unlogged_submissions(rig, await rig.all_jobs())


async def test_cancel_during_a_slow_submit_still_cancels_the_accepted_request(rig: Rig) -> None:
    rig.fal.configure(latency=30.0)
    rig.fal.script("submit", {"kind": "timeout", "hang_seconds": 1.0})  # slow, then accepted
    job_id = await rig.submit()
    await wait_for(rig.client, job_id, until=lambda j: j["status"] == "PROCESSING")
    await asyncio.sleep(0.3)  # the submit is in flight

    resp = await rig.client.post(f"/v1/jobs/{job_id}/cancel", headers=AUTH_A)
    assert resp.status_code == 200

    deadline = time.monotonic() + 10
    while True:
        job = (await rig.client.get(f"/v1/jobs/{job_id}", headers=AUTH_A)).json()
        if job["attempts"] and job["attempts"][-1]["outcome"] == "cancelled":
            break
        assert time.monotonic() < deadline, job
        await asyncio.sleep(0.05)
    [submit] = rig.fal.requests("submit")
    assert job["status"] == "CANCELLED"
    assert job["attempts"][-1]["request_id"] == submit.request_id  # recorded, not lost
    assert [r for r in rig.fal.requests("cancel") if submit.request_id in r.path]
