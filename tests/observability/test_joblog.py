"""The job log (gateway/observability/joblog.py): one INFO record per job transition, with
the job, model, route, provider request id and duration as structured fields."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from gateway.app import create_app
from gateway.catalog import parse_catalog
from providers.registry import KNOWN_PROVIDERS
from tests.conftest import AUTH_A, make_settings, wait_for

CATALOG = {
    "models": [
        {"id": "ok", "kind": "image", "routes": [{"provider": "sandbox", "target": "image"}]},
        {
            "id": "broken",
            "kind": "image",
            "routes": [
                {"provider": "sandbox", "target": "image", "options": {"failure_rate": 1.0}}
            ],
        },
    ]
}


@pytest.fixture
async def client(tmp_path: Path) -> AsyncIterator[httpx.AsyncClient]:
    settings = make_settings(tmp_path, max_route_attempts=1, sandbox_latency=0.3)
    app = create_app(settings, catalog=parse_catalog(CATALOG, KNOWN_PROVIDERS, source="test"))
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as c:
            yield c


async def run(client: httpx.AsyncClient, model: str) -> dict[str, Any]:
    body = {"model": model, "prompt": "a fox", "width": 64, "height": 64}
    resp = await client.post("/v1/jobs/images", json=body, headers=AUTH_A)
    assert resp.status_code == 202, resp.text
    return await wait_for(client, resp.json()["id"])


def job_records(caplog: pytest.LogCaptureFixture, job_id: str) -> list[logging.LogRecord]:
    return [
        r
        for r in caplog.records
        if r.name == "backserv.jobs" and getattr(r, "job_id", None) == job_id
    ]


async def test_each_transition_of_a_job_is_one_info_record_with_its_fields(
    client: httpx.AsyncClient, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="backserv.jobs")

    job = await run(client, "ok")

    records = job_records(caplog, job["id"])
    assert [r.event for r in records] == [
        "queued",
        "processing",
        "submitted",
        "completed",
    ]
    assert all(r.levelno == logging.INFO for r in records)
    assert all(r.model == "ok" for r in records)
    [attempt] = job["attempts"]
    submitted, completed = records[2], records[3]
    for record in (submitted, completed):
        assert record.route == attempt["route"]
        assert record.provider == "sandbox"
        assert record.provider_request_id == attempt["request_id"]
    assert completed.status == "COMPLETED"
    assert completed.duration_seconds >= 0


async def test_a_failed_job_is_logged_with_its_error_code(
    client: httpx.AsyncClient, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="backserv.jobs")

    job = await run(client, "broken")

    assert job["status"] == "FAILED"
    last = job_records(caplog, job["id"])[-1]
    assert last.event == "failed" and last.status == "FAILED"
    assert last.error_code == job["error"]["code"]


async def test_a_cancelled_job_is_logged(
    client: httpx.AsyncClient, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="backserv.jobs")
    body = {"model": "ok", "prompt": "a fox", "width": 64, "height": 64}
    resp = await client.post("/v1/jobs/images", json=body, headers=AUTH_A)
    job_id = resp.json()["id"]

    cancel = await client.post(f"/v1/jobs/{job_id}/cancel", headers=AUTH_A)

    assert cancel.status_code == 200
    events = [r.event for r in job_records(caplog, job_id)]
    assert events[0] == "queued" and events[-1] == "cancelled"
