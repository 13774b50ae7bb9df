"""What jobs cost through the fal and Replicate emulators, with the real adapters: compute
seconds as each provider reports them, a failed run the provider billed, then the fallback's
price; and the usage report adding up to the jobs' costs."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from gateway.app import create_app
from gateway.catalog import parse_catalog
from providers.registry import KNOWN_PROVIDERS
from tests.conftest import AUTH_A, make_settings, wait_for
from tests.emulators.control import EmulatorState
from tests.emulators.fal import create_fal_app
from tests.emulators.replicate import create_replicate_app
from tests.emulators.server import serve

FAL_PER_SECOND = 0.01
FAL = {
    "provider": "fal",
    "target": "fal-ai/flux/dev",
    "options": {"size": "image_size"},
    "price": {"amount": FAL_PER_SECOND, "unit": "compute_second", "estimate": 3},
}
REPLICATE_PER_IMAGE = {
    "provider": "replicate",
    "target": "black-forest-labs/flux-dev",
    "options": {"size": "aspect_ratio"},
    "input_map": {"num_images": "num_outputs"},
    "price": {"amount": 0.025, "unit": "image"},
}
REPLICATE_PER_SECOND = {
    "provider": "replicate",
    "target": "black-forest-labs/flux-schnell",
    "options": {"size": "aspect_ratio"},
    "input_map": {"num_images": "num_outputs"},
    "price": {"amount": 0.002, "unit": "compute_second", "estimate": 5},
}
CATALOG = {
    "models": [
        {"id": "flux", "kind": "image", "routes": [FAL, REPLICATE_PER_IMAGE]},
        {"id": "schnell", "kind": "image", "routes": [REPLICATE_PER_SECOND]},
    ]
}
LATENCY = 0.2


class Rig:
    def __init__(self, client: httpx.AsyncClient, fal: EmulatorState, replicate: EmulatorState):
        self.client, self.fal, self.replicate = client, fal, replicate

    async def run(self, model: str, **extra: Any) -> dict[str, Any]:
        body = {"model": model, "prompt": "a lighthouse", "width": 64, "height": 64, **extra}
        resp = await self.client.post("/v1/jobs/images", json=body, headers=AUTH_A)
        assert resp.status_code == 202, resp.text
        return await wait_for(self.client, resp.json()["id"], timeout=20)


@pytest.fixture
async def rig(tmp_path: Path) -> AsyncIterator[Rig]:
    fal_app, replicate_app = create_fal_app(), create_replicate_app()
    async with serve(fal_app) as fal_url, serve(replicate_app) as replicate_url:
        settings = make_settings(
            tmp_path,
            fal_key="fal-test-key",
            fal_queue_url=fal_url,
            replicate_api_token="r8-test-token",
            replicate_base_url=replicate_url,
            provider_poll_seconds=0.1,
            provider_timeout_seconds=5.0,
            retry_base_seconds=0.01,
            max_route_attempts=1,
            fetch_allow="127.0.0.1",
        )
        app = create_app(settings, catalog=parse_catalog(CATALOG, KNOWN_PROVIDERS, source="t"))
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as c:
                fal, replicate = fal_app.state.emulator, replicate_app.state.emulator
                fal.configure(latency=LATENCY)
                replicate.configure(latency=LATENCY)
                yield Rig(c, fal, replicate)


async def test_a_fal_job_costs_the_inference_time_fal_reports(rig: Rig) -> None:
    job = await rig.run("flux")

    assert job["status"] == "COMPLETED" and job["provider"] == "fal", job
    [attempt] = job["attempts"]
    # the emulator runs for LATENCY seconds and reports it as metrics.inference_time
    assert attempt["cost"] == pytest.approx(FAL_PER_SECOND * LATENCY, abs=0.0005)
    assert job["usage"]["cost"] == attempt["cost"]
    assert job["usage"]["estimate"] == pytest.approx(FAL_PER_SECOND * 3)


async def test_a_billed_failure_at_fal_counts_and_the_fallback_adds_its_price(rig: Rig) -> None:
    rig.fal.configure(fail_runs=True)

    job = await rig.run("flux", num_images=2)

    assert job["status"] == "COMPLETED" and job["fallback_used"], job
    failed, won = job["attempts"]
    assert (failed["provider"], failed["outcome"]) == ("fal", "failed")
    assert failed["cost"] == pytest.approx(FAL_PER_SECOND * LATENCY, abs=0.0005)
    assert failed["cost"] > 0  # fal ran it (and billed it) before it failed
    assert (won["provider"], won["cost"]) == ("replicate", 0.05)  # two images at $0.025
    assert job["usage"]["cost"] == pytest.approx(failed["cost"] + 0.05)


async def test_a_replicate_job_costs_the_predict_time_replicate_reports(rig: Rig) -> None:
    job = await rig.run("schnell")

    assert job["status"] == "COMPLETED" and job["provider"] == "replicate", job
    [attempt] = job["attempts"]
    assert attempt["cost"] == pytest.approx(0.002 * LATENCY, abs=0.0002)
    assert job["usage"]["priced"] is True


async def test_the_usage_report_adds_up_to_the_jobs_costs(rig: Rig) -> None:
    rig.fal.configure(run_outcomes=["fail"])
    jobs = [await rig.run("flux"), await rig.run("flux"), await rig.run("schnell")]

    resp = await rig.client.get("/v1/usage?group_by=provider", headers=AUTH_A)

    total = sum(j["usage"]["cost"] for j in jobs)
    assert resp.json()["total"] == pytest.approx(total, abs=1e-6)
    by_provider = {line["provider"]: line for line in resp.json()["data"]}
    assert by_provider["fal"]["attempts"] == 2 and by_provider["replicate"]["attempts"] == 2
