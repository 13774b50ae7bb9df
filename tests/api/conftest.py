"""Fixtures of the API tests: an app whose scheduler never runs, so jobs stay QUEUED."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from tests.api.support import running
from tests.conftest import make_settings


@pytest.fixture
async def idle_client(tmp_path: Path) -> AsyncIterator[httpx.AsyncClient]:
    """A client of an app started with ``start_scheduler=False``: every job stays QUEUED."""
    async with running(make_settings(tmp_path), start_scheduler=False) as (client, _gw):
        yield client
