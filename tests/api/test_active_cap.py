"""The per-key cap on active jobs (BACKSERV_MAX_ACTIVE_JOBS_PER_KEY): a 429 naming it."""

from __future__ import annotations

from pathlib import Path

from tests.api.support import running
from tests.conftest import AUTH_A, AUTH_B, make_settings

BODY = {"model": "sandbox-image", "input": {"prompt": "a fox", "width": 64, "height": 64}}


async def test_a_key_over_its_active_jobs_cap_gets_a_429_naming_the_cap(tmp_path: Path) -> None:
    settings = make_settings(tmp_path, max_active_jobs_per_key=2)
    async with running(settings, start_scheduler=False) as (client, _gw):  # jobs stay QUEUED
        for _ in range(2):
            resp = await client.post("/v1/jobs", json=BODY, headers=AUTH_A)
            assert resp.status_code == 202, resp.text
        resp = await client.post("/v1/jobs", json=BODY, headers=AUTH_A)
        assert resp.status_code == 429, resp.text
        error = resp.json()["error"]
        assert (error["type"], error["code"]) == ("rate_limit_error", "too_many_active_jobs")
        assert "the limit is 2" in error["message"]
        assert int(resp.headers["retry-after"]) >= 1

        # per key: another key still submits
        resp = await client.post("/v1/jobs", json=BODY, headers=AUTH_B)
        assert resp.status_code == 202, resp.text

        # a cancelled job no longer counts
        jobs = (await client.get("/v1/jobs", headers=AUTH_A)).json()["jobs"]
        resp = await client.post(f"/v1/jobs/{jobs[0]['id']}/cancel", headers=AUTH_A)
        assert resp.status_code == 200, resp.text
        resp = await client.post("/v1/jobs", json=BODY, headers=AUTH_A)
        assert resp.status_code == 202, resp.text


async def test_the_cap_is_off_by_default(tmp_path: Path) -> None:
    async with running(make_settings(tmp_path), start_scheduler=False) as (client, _gw):
        for _ in range(5):
            resp = await client.post("/v1/jobs", json=BODY, headers=AUTH_A)
            assert resp.status_code == 202, resp.text
