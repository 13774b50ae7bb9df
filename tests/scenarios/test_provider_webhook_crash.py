"""kill -9 of the real gateway between a provider's webhook delivery and the job's finish.

The gateway (a ``backserv serve`` subprocess, provider webhooks on, the safety-net poll set
to 60 s) receives the provider's signed delivery that the request ended (fal's, or
Replicate's with the secret the gateway reads from the emulator), and starts copying the
output; the emulator holds that download, so the job's finish is not committed when the
process is killed. The next process on the same database resumes the open attempt by its
provider reference: the job ends COMPLETED once, the provider received one submit, and a
redelivery (when the killed process never answered the first one) is taken without harm.

Two variants: the delivery was answered 200 before the kill (the provider will not send it
again), and the delivery's answer never reached the provider (the process died first: it
redelivers to the restarted gateway).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from starlette.types import ASGIApp, Receive, Scope, Send

from tests.emulators.fal import create_fal_app
from tests.emulators.replicate import create_replicate_app
from tests.emulators.server import serve
from tests.scenarios.test_crash_recovery import (
    AUTH,
    MODEL,
    Gateway,
    gateway_env,
    gateway_running,
    poll_until,
)


class HeldFiles:
    """ASGI middleware of the emulator: while ``held``, a request for an output file waits
    (the gateway's download hangs), and ``asked`` says one came."""

    def __init__(self, app: ASGIApp, gate: FileGate) -> None:
        self.app = app
        self.gate = gate

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["path"].startswith("/files/"):
            self.gate.asked.set()
            await self.gate.released.wait()
        await self.app(scope, receive, send)


class FileGate:
    def __init__(self) -> None:
        self.asked = asyncio.Event()
        self.released = asyncio.Event()


class KillBeforeAnswer(httpx.AsyncBaseTransport):
    """The emulator's webhook transport: forwards each delivery to the gateway; with
    ``kill`` set, the first completed delivery's answer is swallowed by a kill -9 of the
    gateway once it has started the download (as if the process died before answering)."""

    def __init__(self, kill: Callable[[], Awaitable[None]] | None) -> None:
        self.inner = httpx.AsyncHTTPTransport()
        self.kill = kill
        self.statuses: list[int] = []

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        response = await self.inner.handle_async_request(request)
        await response.aread()
        self.statuses.append(response.status_code)
        if self.kill is not None:
            kill, self.kill = self.kill, None
            await kill()
            raise httpx.ReadError("the gateway died before its answer was read", request=request)
        return response

    async def aclose(self) -> None:
        await self.inner.aclose()


EMULATORS = {"fal": create_fal_app, "replicate": create_replicate_app}
MODELS = {"fal": MODEL, "replicate": "flux-replicate"}
REPLICATE_CATALOG = """
[[models]]
id = "flux-replicate"
kind = "image"
description = "FLUX on the Replicate emulator only."

[[models.routes]]
provider = "replicate"
target = "black-forest-labs/flux-dev"
options = { size = "aspect_ratio" }
"""


def webhook_env(tmp_path: Path, provider: str, url: str) -> dict[str, str]:
    """The crash tests' gateway (test_crash_recovery) on ``provider``'s emulator at ``url``,
    webhooks on; Replicate's secret is read from the emulator, as when none is set."""
    env = {
        **gateway_env(tmp_path, url),
        "BACKSERV_PROVIDER_WEBHOOKS": "true",
        "BACKSERV_PROVIDER_WEBHOOK_POLL_SECONDS": "60",
    }
    if provider == "fal":
        return {**env, "BACKSERV_FAL_WEBHOOK_JWKS_URL": f"{url}/.well-known/jwks.json"}
    del env["FAL_KEY"], env["BACKSERV_FAL_QUEUE_URL"]
    catalog = tmp_path / "replicate.toml"
    catalog.write_text(REPLICATE_CATALOG)
    return {
        **env,
        "BACKSERV_CATALOG_PATH": str(catalog),
        "REPLICATE_API_TOKEN": "r8-crash-token",
        "BACKSERV_REPLICATE_BASE_URL": url,
    }


async def job_of(client: httpx.AsyncClient, job_id: str) -> dict[str, Any]:
    resp = await client.get(f"/v1/jobs/{job_id}", headers=AUTH)
    assert resp.status_code == 200, resp.text
    body: dict[str, Any] = resp.json()
    return body


@pytest.mark.parametrize("provider", ["fal", "replicate"])
@pytest.mark.parametrize("answered", [True, False], ids=["answered", "unanswered"])
async def test_kill_9_between_a_webhook_delivery_and_the_finish_loses_nothing(
    tmp_path: Path, answered: bool, provider: str
) -> None:
    gate = FileGate()
    holder: dict[str, Gateway] = {}

    async def kill_when_downloading() -> None:
        await asyncio.wait_for(gate.asked.wait(), 20)
        await holder["gateway"].kill_9()

    transport = KillBeforeAnswer(None if answered else kill_when_downloading)
    emulator_app = EMULATORS[provider](webhook_transport=transport)
    emulator_app.add_middleware(HeldFiles, gate=gate)
    emulator = emulator_app.state.emulator
    emulator.configure(latency=0.5, webhook_retry_delays=[0.5] * 40)
    async with serve(emulator_app) as emulator_url:
        env = webhook_env(tmp_path, provider, emulator_url)
        async with gateway_running(tmp_path, env) as gateway:
            holder["gateway"] = gateway
            async with httpx.AsyncClient(base_url=gateway.url, timeout=10) as client:
                body = {
                    "model": MODELS[provider],
                    "prompt": "a lighthouse",
                    "width": 64,
                    "height": 64,
                }
                resp = await client.post("/v1/jobs/images", json=body, headers=AUTH)
                assert resp.status_code == 202, resp.text
                job_id = resp.json()["id"]
                await asyncio.wait_for(gate.asked.wait(), 20)
                await poll_until(
                    lambda: _answered(transport, 1), 20, "the delivery", gateway.diagnostics
                )
                # the delivery arrived and the runner is copying the output: not finished
                if answered:
                    before = await job_of(client, job_id)
                    assert before["status"] == "PROCESSING", before
                    await gateway.kill_9()
            # (unanswered: the transport killed it inside the delivery's answer)
            await asyncio.to_thread(gateway.server.process.wait, 20)
            assert transport.statuses == [200], transport.statuses
            [request_id] = [r.request_id for r in emulator.requests("submit") if r.request_id]

            gate.released.set()
            await gateway.restart()
            async with httpx.AsyncClient(base_url=gateway.url, timeout=10) as client:

                async def finished() -> dict[str, Any] | None:
                    job = await job_of(client, job_id)
                    return job if job["status"] not in ("QUEUED", "PROCESSING") else None

                job = await poll_until(finished, 30, "the job finished", gateway.diagnostics)
                if not answered:  # delivered again, and the new process took it
                    await poll_until(
                        lambda: _answered(transport, 2), 30, "a redelivery", gateway.diagnostics
                    )
                metrics = (await client.get("/metrics")).text
                file = await client.get(job["result"]["url"], headers=AUTH)

    assert job["status"] == "COMPLETED", job
    assert emulator.submit_count() == 1, emulator.requests("submit")
    [attempt] = job["attempts"]
    assert attempt["request_id"] == request_id
    assert attempt["outcome"] == "succeeded", attempt
    assert file.status_code == 200 and file.content.startswith(b"\x89PNG")
    finished_lines = [
        line
        for line in metrics.splitlines()
        if line.startswith("backserv_jobs_finished_total{") and 'status="COMPLETED"' in line
    ]
    assert finished_lines and all(line.endswith(" 1.0") for line in finished_lines), metrics
    assert transport.statuses[-1] == 200, transport.statuses
    if not answered:
        assert len(transport.statuses) >= 2, transport.statuses


async def _answered(transport: KillBeforeAnswer, count: int) -> bool:
    """Whether the gateway answered ``count`` deliveries, the last one 200."""
    return len(transport.statuses) >= count and transport.statuses[-1] == 200
