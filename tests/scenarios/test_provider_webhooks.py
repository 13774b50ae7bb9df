"""Provider webhooks end to end: the fal and Replicate emulators call the gateway back.

The gateway runs in-process; the emulators deliver their signed webhooks to it through an
ASGI transport (what their HTTP client would send to the public URL). The safety-net poll
is set long (60 s) where a test shows that a job finished on its delivery, and short where
it shows that a lost or forged delivery is still made up for.
"""

from __future__ import annotations

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
from tests.postgres import fresh_database
from tests.scenarios.test_hosted_e2e import CATALOG

PUBLIC_URL = "http://127.0.0.1:9"  # what the providers are told; the transport below delivers
MODELS = ["flux-fal-only", "flux-replicate"]  # one per provider, each with that route only
EMULATORS = {"fal": create_fal_app, "replicate": create_replicate_app}


class Later:
    """An ASGI app that is the gateway once it exists (the emulators are made first)."""

    app: Starlette | None = None

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        assert self.app is not None
        await self.app(scope, receive, send)


@dataclass
class Rig:
    client: httpx.AsyncClient
    fal: EmulatorState
    replicate: EmulatorState

    async def run(self, model: str) -> dict[str, Any]:
        body = {"model": model, "prompt": "a lighthouse", "width": 64, "height": 64}
        resp = await self.client.post("/v1/jobs/images", json=body, headers=AUTH_A)
        assert resp.status_code == 202, resp.text
        return await wait_for(self.client, resp.json()["id"], timeout=20)

    async def job(self, job_id: str) -> dict[str, Any]:
        resp = await self.client.get(f"/v1/jobs/{job_id}", headers=AUTH_A)
        assert resp.status_code == 200, resp.text
        body: dict[str, Any] = resp.json()
        return body

    async def metrics(self) -> str:
        return (await self.client.get("/metrics")).text

    def emulator(self, model: str) -> EmulatorState:
        return self.fal if emulator_name(model) == "fal" else self.replicate

    def polls(self, emulator: EmulatorState, job: dict[str, Any]) -> int:
        """Status reads of the job's provider request."""
        rid = job["attempts"][-1]["request_id"]
        return len([r for r in emulator.requests() if r.request_id == rid and r.route != "submit"])


async def rig_for(tmp_path: Path, safety_poll: float) -> AsyncIterator[Rig]:
    later = Later()
    transport = httpx.ASGITransport(app=later)
    fal_app = create_fal_app(webhook_transport=transport)
    replicate_app = create_replicate_app(webhook_transport=transport)
    async with serve(fal_app) as fal_url, serve(replicate_app) as replicate_url:
        settings = make_settings(
            tmp_path,
            public_url=PUBLIC_URL,
            provider_webhooks=True,
            provider_webhook_poll_seconds=safety_poll,
            **provider_settings("fal", fal_app, fal_url),
            **provider_settings("replicate", replicate_app, replicate_url),
            provider_poll_seconds=0.1,
            provider_timeout_seconds=5.0,
            fetch_allow="127.0.0.1",
        )
        app = create_app(settings, catalog=parse_catalog(CATALOG, KNOWN_PROVIDERS, source="test"))
        later.app = app
        async with (
            app.router.lifespan_context(app),
            httpx.AsyncClient(
                transport=httpx.ASGITransport(app=app), base_url="http://testserver"
            ) as client,
        ):
            fal, replicate = fal_app.state.emulator, replicate_app.state.emulator
            fal.configure(latency=0.3)
            replicate.configure(latency=0.3)
            yield Rig(client, fal, replicate)


def provider_settings(provider: str, emulator: Starlette, url: str) -> dict[str, Any]:
    """Settings that send ``provider``'s requests to its emulator at ``url`` and verify its
    deliveries with the emulator's keys."""
    if provider == "fal":
        return {
            "fal_key": "fal-test-key",
            "fal_queue_url": url,
            "fal_webhook_jwks_url": f"{url}/.well-known/jwks.json",
        }
    return {
        "replicate_api_token": "r8-test-token",
        "replicate_base_url": url,
        "replicate_webhook_secret": emulator.state.emulator.signer.secret,
    }


@pytest.fixture
async def rig(tmp_path: Path) -> AsyncIterator[Rig]:
    async for r in rig_for(tmp_path, safety_poll=60.0):
        yield r


@pytest.fixture
async def netted(tmp_path: Path) -> AsyncIterator[Rig]:
    async for r in rig_for(tmp_path, safety_poll=0.5):
        yield r


@pytest.mark.parametrize("model", MODELS)
async def test_a_job_finishes_on_its_providers_webhook_not_on_a_poll(rig: Rig, model: str) -> None:
    job = await rig.run(model)

    assert job["status"] == "COMPLETED", job
    assert job["result"]["url"].startswith(f"{PUBLIC_URL}/files/")
    emulator = rig.emulator(model)
    # the one read right after the submit; the end came by webhook (the safety net is 60 s)
    assert rig.polls(emulator, job) <= 2, emulator.requests()
    metrics = await rig.metrics()
    provider = emulator_name(model)
    assert f'backserv_provider_ends_total{{provider="{provider}",via="webhook"}} 1.0' in metrics
    assert f'backserv_provider_webhooks_received_total{{provider="{provider}"}} 1.0' in metrics
    polls = metric_value(metrics, f'backserv_provider_polls_total{{provider="{provider}"}}')
    assert polls == rig.polls(emulator, job), metrics
    per_job = f'backserv_provider_polls_per_job_count{{provider="{provider}"}} 1.0'
    assert per_job in metrics


def emulator_name(model: str) -> str:
    return "fal" if model == "flux-fal-only" else "replicate"


def metric_value(exposition: str, name: str) -> float:
    for line in exposition.splitlines():
        if line.startswith(name + " "):
            return float(line.rsplit(" ", 1)[1])
    raise AssertionError(f"{name} is not in the exposition")


@pytest.mark.parametrize("model", MODELS)
async def test_a_delivery_before_the_submit_is_recorded_is_kept_for_its_request(
    rig: Rig, model: str
) -> None:
    emulator = rig.emulator(model)
    emulator.script("webhook:completed", "early")  # delivered before the submit's answer

    job = await rig.run(model)  # (the safety net is 60 s: only the delivery can end it)

    assert job["status"] == "COMPLETED", job
    assert [d.status for d in emulator.webhooks.deliveries()] == [200]
    assert rig.polls(emulator, job) <= 2
    provider = emulator_name(model)
    ends = f'backserv_provider_ends_total{{provider="{provider}",via="webhook"}} 1.0'
    assert ends in await rig.metrics()


@pytest.mark.parametrize("model", MODELS)
async def test_a_forged_delivery_is_refused_and_the_safety_net_poll_finishes_the_job(
    netted: Rig, model: str
) -> None:
    emulator = netted.emulator(model)
    emulator.script("webhook", "bad_signature")

    job = await netted.run(model)

    assert job["status"] == "COMPLETED", job
    assert emulator.submit_count() == 1
    refused = [d for d in emulator.webhooks.deliveries() if d.status is not None]
    assert refused and all(d.status == 401 for d in refused), refused
    metrics = await netted.metrics()
    provider = emulator_name(model)
    rejected = f'backserv_provider_webhooks_total{{outcome="rejected",provider="{provider}"}}'
    assert metric_value(metrics, rejected) >= 1, metrics
    assert f'outcome="verified",provider="{provider}"' not in metrics
    assert f'backserv_provider_ends_total{{provider="{provider}",via="poll"}} 1.0' in metrics
    assert f'backserv_provider_ends_total{{provider="{provider}",via="webhook"}}' not in metrics


@pytest.mark.parametrize("model", MODELS)
async def test_a_lost_delivery_is_found_by_the_safety_net_poll_and_counted_as_such(
    netted: Rig, model: str
) -> None:
    emulator = netted.emulator(model)
    emulator.script("webhook", "drop")

    job = await netted.run(model)

    assert job["status"] == "COMPLETED", job
    assert emulator.submit_count() == 1
    assert [d.status for d in emulator.webhooks.deliveries()] == [None]  # dropped
    metrics = await netted.metrics()
    provider = emulator_name(model)
    assert f'backserv_provider_ends_total{{provider="{provider}",via="poll"}} 1.0' in metrics
    assert f'backserv_provider_ends_total{{provider="{provider}",via="webhook"}}' not in metrics


@pytest.mark.parametrize("model", MODELS)
async def test_duplicated_deliveries_change_nothing(rig: Rig, model: str) -> None:
    emulator = rig.emulator(model)
    emulator.script("webhook", {"kind": "duplicate", "times": 3, "seconds": 0})

    job = await rig.run(model)
    await emulator.webhooks.idle()  # every copy delivered and answered

    assert job["status"] == "COMPLETED", job
    assert len(job["attempts"]) == 1
    assert emulator.submit_count() == 1
    assert [d.status for d in emulator.webhooks.deliveries()] == [200] * 4
    assert await rig.job(job["id"]) == job  # the copies that came after the finish, too
    file = await rig.client.get(job["result"]["url"], headers=AUTH_A)
    assert file.status_code == 200 and file.content.startswith(b"\x89PNG")
    metrics = await rig.metrics()
    provider = emulator_name(model)
    # each copy is verified and counted as received; the request ended once
    assert f'backserv_provider_webhooks_received_total{{provider="{provider}"}} 4.0' in metrics
    assert f'backserv_provider_ends_total{{provider="{provider}",via="webhook"}} 1.0' in metrics
    [finished] = [x for x in metrics.splitlines() if x.startswith("backserv_jobs_finished_total{")]
    assert 'status="COMPLETED"' in finished and finished.endswith(" 1.0"), finished


@pytest.mark.parametrize("model", MODELS)
async def test_a_delivery_to_the_replica_without_the_job_reaches_the_one_running_it(
    tmp_path: Path, model: str
) -> None:
    """Two replicas on one PostgreSQL database: A runs the job, the provider delivers to B
    (as a load balancer may), B relays it with its state, and A finishes the job from it (the
    safety net is 60 s)."""
    provider = emulator_name(model)
    to_b = Later()
    emulator_app = EMULATORS[provider](webhook_transport=httpx.ASGITransport(app=to_b))
    async with fresh_database() as url, serve(emulator_app) as emulator_url:

        def replica(name: str) -> Starlette:
            settings = make_settings(
                tmp_path / name,
                database_url=url,
                storage_dir=tmp_path / "files",
                public_url=PUBLIC_URL,
                provider_webhooks=True,
                provider_webhook_poll_seconds=60.0,
                **provider_settings(provider, emulator_app, emulator_url),
                provider_poll_seconds=0.1,
                fetch_allow="127.0.0.1",
                secret_key="s" * 32,
            )
            catalog = parse_catalog(CATALOG, KNOWN_PROVIDERS, source="test")
            return create_app(settings, catalog=catalog, start_scheduler=name == "a")

        a, b = replica("a"), replica("b")
        to_b.app = b
        emulator = emulator_app.state.emulator
        emulator.configure(latency=0.3)
        async with a.router.lifespan_context(a), b.router.lifespan_context(b):
            transport = httpx.ASGITransport(app=a)
            async with httpx.AsyncClient(transport=transport, base_url="http://a") as client:
                rig = Rig(client, emulator, emulator)
                job = await rig.run(model)

    assert job["status"] == "COMPLETED", job
    delivered = [d for d in emulator.webhooks.deliveries() if d.status is not None]
    assert delivered and all(d.status == 200 for d in delivered), delivered
    # B relayed the state the delivery brought: A read neither the status nor the result
    assert rig.polls(emulator, job) == 0, emulator.requests()
