"""providers.testing.FakeProvider, plugged into a whole gateway the way users plug it in."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from gateway.app import create_app
from gateway.catalog import Catalog, parse_catalog
from gateway.errors import ProviderInputError, ProviderTransientError, ProviderUnavailable
from providers.base import Output, Provider
from providers.testing import (
    Call,
    FakeProvider,
    Outcome,
    fail,
    media_output,
    png,
    queued,
    refuse,
    running,
    succeed,
)
from tests.api.support import download
from tests.conftest import AUTH_A, make_settings, wait_for


def catalog(*providers: str) -> Catalog:
    """One image model whose route chain runs through ``providers``, in order."""
    routes = [{"provider": p, "target": f"{p}-target"} for p in providers]
    raw = {"models": [{"id": "my-model", "kind": "image", "routes": routes}]}
    return parse_catalog(raw, providers, source="test")


@contextlib.asynccontextmanager
async def gateway(
    tmp_path: Path, providers: dict[str, Provider]
) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(make_settings(tmp_path), providers=providers, catalog=catalog(*providers))
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
            yield client


async def submit(client: httpx.AsyncClient, prompt: str = "a cat") -> str:
    resp = await client.post(
        "/v1/jobs",
        json={"model": "my-model", "input": {"prompt": prompt, "seed": 7}},
        headers=AUTH_A,
    )
    assert resp.status_code == 202, resp.text
    job_id: str = resp.json()["id"]
    return job_id


async def test_a_job_completes_with_the_scripted_output(tmp_path: Path) -> None:
    picture = png(3, 2, (255, 0, 0))
    fake = FakeProvider(succeed(picture, after=2))
    async with gateway(tmp_path, {"fake": fake}) as client:
        job_id = await submit(client)
        job = await wait_for(client, job_id)
        assert job["status"] == "COMPLETED", job
        result = job["result"]
        assert (result["content_type"], result["width"], result["height"]) == ("image/png", 3, 2)
        stored = await download(client, result["url"])
        assert stored.status_code == 200
        assert stored.content == picture
    [call] = fake.submits
    assert (call.job_id, call.route.target, call.kind) == (job_id, "fake-target", "image")
    assert call.input["prompt"] == "a cat"
    assert call.mapped["prompt"] == "a cat"  # what the route's mapping sends a provider
    assert [c.request_id for c in fake.polls] == [call.request_id] * 3  # two running, one done
    assert fake.cancels == []


async def test_a_transient_failure_is_retried_then_the_job_completes(tmp_path: Path) -> None:
    fake = FakeProvider(fail(ProviderTransientError("the GPU fell over")), succeed())
    async with gateway(tmp_path, {"fake": fake}) as client:
        job_id = await submit(client)
        job = await wait_for(client, job_id)
    assert job["status"] == "COMPLETED", job
    assert job["retry_count"] == 1
    first, second = job["attempts"]
    assert first["outcome"] == "failed"
    assert first["error"]["message"] == "the GPU fell over"
    assert second["outcome"] == "succeeded"
    assert [c.job_id for c in fake.submits] == [job_id, job_id]
    assert [a["request_id"] for a in job["attempts"]] == [c.request_id for c in fake.submits]


async def test_a_refused_submit_is_retried_too(tmp_path: Path) -> None:
    fake = FakeProvider(refuse(ProviderTransientError), succeed())
    async with gateway(tmp_path, {"fake": fake}) as client:
        job = await wait_for(client, await submit(client))
    assert job["status"] == "COMPLETED", job
    assert [c.request_id for c in fake.submits] == [None, "fake-1"]


async def test_an_input_error_fails_the_job_without_fallback(tmp_path: Path) -> None:
    primary = FakeProvider(fail(ProviderInputError("the prompt is not allowed")))
    backup = FakeProvider(name="backup")
    async with gateway(tmp_path, {"fake": primary, "backup": backup}) as client:
        job = await wait_for(client, await submit(client))
    assert job["status"] == "FAILED"
    assert job["error"]["code"] == "invalid_input"
    assert job["error"]["message"] == "the prompt is not allowed"
    assert len(primary.submits) == 1
    assert backup.calls == []


async def test_an_unavailable_route_falls_back_to_the_next(tmp_path: Path) -> None:
    primary = FakeProvider(fail(ProviderUnavailable("out of capacity")))
    backup = FakeProvider(name="backup")
    async with gateway(tmp_path, {"fake": primary, "backup": backup}) as client:
        job_id = await submit(client)
        job = await wait_for(client, job_id)
    assert job["status"] == "COMPLETED", job
    assert job["fallback_used"] is True
    assert [c.job_id for c in backup.submits] == [job_id]


async def test_queue_position_and_progress_steps_reach_the_job(tmp_path: Path) -> None:
    release = asyncio.Event()
    # each step is one read, 10 ms apart; the runner saves progress at most every 0.25 s,
    # so a state must last that long to be seen (50 reads do)
    fake = FakeProvider(succeed(after=[*[queued(3)] * 50, running(40)], until=release))
    async with gateway(tmp_path, {"fake": fake}) as client:
        job_id = await submit(client)
        queued_job = await wait_for(client, job_id, until=lambda j: j["queue_position"] == 3)
        assert queued_job["status"] == "PROCESSING"
        await wait_for(client, job_id, until=lambda j: j["progress"] == 40)
        release.set()
        job = await wait_for(client, job_id)
    assert job["status"] == "COMPLETED", job


async def test_a_cancelled_job_cancels_its_request(tmp_path: Path) -> None:
    fake = FakeProvider(succeed(until=asyncio.Event()))  # runs until cancelled
    async with gateway(tmp_path, {"fake": fake}) as client:
        job_id = await submit(client)
        await wait_for(client, job_id, until=lambda j: bool(j["attempts"]) and bool(fake.polls))
        resp = await client.post(f"/v1/jobs/{job_id}/cancel", headers=AUTH_A)
        assert resp.status_code == 200, resp.text
        job = await wait_for(client, job_id)
        for _ in range(200):  # the scheduler stops the request just after the cancel
            if fake.cancels:
                break
            await asyncio.sleep(0.01)
    assert job["status"] == "CANCELLED"
    assert [(c.job_id, c.request_id) for c in fake.cancels] == [(job_id, "fake-1")]


async def test_a_switched_off_fake_makes_its_model_unavailable(tmp_path: Path) -> None:
    fake = FakeProvider(available=False, reason="no credits left")
    async with gateway(tmp_path, {"fake": fake}) as client:
        resp = await client.post(
            "/v1/jobs", json={"model": "my-model", "input": {"prompt": "x"}}, headers=AUTH_A
        )
        models = (await client.get("/v1/models/my-model", headers=AUTH_A)).json()
    assert resp.status_code == 503
    assert "no credits left" in resp.json()["error"]["message"]
    assert fake.calls == []
    assert "no credits left" in str(models)


@pytest.mark.parametrize(
    ("free_resubmit", "status", "submits"),
    [(True, "COMPLETED", 2), (False, "FAILED", 1)],
)
async def test_a_forgotten_request_is_resubmitted_only_if_free(
    tmp_path: Path, free_resubmit: bool, status: str, submits: int
) -> None:
    fake = FakeProvider(succeed(until=asyncio.Event()), succeed(), free_resubmit=free_resubmit)
    async with gateway(tmp_path, {"fake": fake}) as client:
        job_id = await submit(client)
        await wait_for(client, job_id, until=lambda j: bool(fake.polls))
        fake.forget()
        job = await wait_for(client, job_id)
    assert job["status"] == status, job
    assert len(fake.submits) == submits
    if not free_resubmit:
        assert job["error"]["code"] == "provider_result_lost"


async def test_a_script_function_picks_each_outcome_from_the_call(tmp_path: Path) -> None:
    def script(call: Call) -> Outcome:
        if "forbidden" in call.input["prompt"]:
            return fail(ProviderInputError)
        return succeed()

    fake = FakeProvider(script=script)
    async with gateway(tmp_path, {"fake": fake}) as client:
        bad = await wait_for(client, await submit(client, "a forbidden thing"))
        good = await wait_for(client, await submit(client, "a cat"))
    assert (bad["status"], good["status"]) == ("FAILED", "COMPLETED")


def test_bytes_of_unknown_media_are_refused_when_scripted() -> None:
    with pytest.raises(ValueError, match="not a PNG, JPEG, GIF, WebP or MP4"):
        succeed(b"plain text")
    own = Output("video/webm", data=b"\x1aE\xdf\xa3")
    assert media_output(own) is own
