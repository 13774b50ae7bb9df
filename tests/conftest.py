"""Shared fixtures: a SQLite job store, an app on a temporary database, clients for two keys."""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
import pytest
import respx.mocks
from starlette.applications import Starlette

from gateway.app import Gateway, create_app
from gateway.settings import Settings
from gateway.store.sqlite import SQLiteJobStore

if TYPE_CHECKING:
    from tests.s3server import S3Server

# respx mocks httpcore's pools; the gateway's own (gateway/lean_pool.py) takes the same requests
respx.mocks.HTTPCoreMocker.add_targets("gateway.lean_pool.LeanPool")

ROOT = Path(__file__).resolve().parent.parent
KEY_A = "test-key-a"
KEY_B = "test-key-b"
AUTH_A = {"Authorization": f"Bearer {KEY_A}"}
AUTH_B = {"Authorization": f"Bearer {KEY_B}"}


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """Settings must come from the test, not from the developer's shell or .env."""
    for name in list(os.environ):
        if name.startswith("BACKSERV_") and name != "BACKSERV_TEST_POSTGRES_URL":
            monkeypatch.delenv(name)
    for name in ("FAL_KEY", "FAL_KEY_ID", "FAL_KEY_SECRET", "REPLICATE_API_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    for name in list(os.environ):  # the result bucket's settings also read AWS_*
        if name.startswith("AWS_"):
            monkeypatch.delenv(name)


def make_settings(tmp_path: Path, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "database_url": f"sqlite:///{tmp_path / 'backserv.db'}",
        "storage_dir": tmp_path / "files",
        "catalog_path": ROOT / "catalog.toml",
        "api_keys": f"{KEY_A},{KEY_B}",
        "sandbox_latency": 0.05,
        "scheduler_poll_seconds": 0.2,
        "retry_base_seconds": 0.01,
        "public_url": "http://testserver",
    }
    values.update(overrides)
    return Settings(_env_file=None, **values)


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[SQLiteJobStore]:
    """A fresh SQLite job store on ``tmp_path`` (``jobs.db``, not the app's database), open."""
    s = SQLiteJobStore(tmp_path / "jobs.db")
    await s.open()
    try:
        yield s
    finally:
        await s.close()


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return make_settings(tmp_path)


@pytest.fixture
async def app(settings: Settings) -> AsyncIterator[Starlette]:
    application = create_app(settings)
    async with application.router.lifespan_context(application):
        yield application


@pytest.fixture
def gateway(app: Starlette) -> Gateway:
    gw: Gateway = app.state.gateway
    return gw


@pytest.fixture
async def client(app: Starlette) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as c:
        yield c


async def wait_for(
    client: httpx.AsyncClient,
    job_id: str,
    headers: dict[str, str] = AUTH_A,
    until: Callable[[dict[str, Any]], bool] | None = None,
    timeout: float = 10.0,
) -> dict[str, Any]:
    """Poll a job until ``until`` holds (default: a terminal status); return its body."""
    done = until or (lambda j: j["status"] in ("COMPLETED", "FAILED", "CANCELLED"))
    deadline = time.monotonic() + timeout
    while True:
        resp = await client.get(f"/v1/jobs/{job_id}", headers=headers)
        assert resp.status_code == 200, resp.text
        body: dict[str, Any] = resp.json()
        if done(body):
            return body
        if time.monotonic() > deadline:
            raise AssertionError(f"job {job_id} stuck in {body['status']}: {body}")
        await asyncio.sleep(0.02)


@pytest.fixture(scope="session")
def s3() -> Iterator[S3Server]:
    """An S3-compatible server (moto) on 127.0.0.1, shared by the session's tests."""
    from tests.s3server import s3_server  # boto3 and moto: only for the tests that use them

    with s3_server() as server:
        yield server


@pytest.fixture
def bucket(s3: S3Server) -> str:
    """A new, empty bucket on ``s3``."""
    return s3.new_bucket()
