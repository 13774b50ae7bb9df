"""The access log (gateway/observability/access_log.py): one record per request, when on."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from tests.api.support import running
from tests.conftest import AUTH_A, make_settings


def access(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name == "backserv.access"]


async def test_each_request_is_one_record_with_its_fields_and_no_query_string(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="backserv.access")
    async with running(make_settings(tmp_path, access_log=True)) as (client, _gw):
        ok = await client.get("/v1/models?token=SECRET", headers=AUTH_A)
        missing = await client.get("/v1/jobs/job-nope", headers=AUTH_A)

    first, second = access(caplog)
    assert (first.method, first.path, first.status) == ("GET", "/v1/models", ok.status_code)
    assert (second.path, second.status) == ("/v1/jobs/job-nope", missing.status_code)
    assert first.request_id == ok.headers["x-request-id"]
    assert second.request_id == missing.headers["x-request-id"]
    assert first.duration_ms >= 0
    assert all("SECRET" not in r.getMessage() for r in access(caplog))


async def test_there_is_no_access_log_unless_it_is_turned_on(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="backserv.access")
    async with running(make_settings(tmp_path)) as (client, _gw):
        resp = await client.get("/v1/models", headers=AUTH_A)

    assert resp.status_code == 200
    assert access(caplog) == []
