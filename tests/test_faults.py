"""Exceptions nobody translated: a resource shortage is retried, anything else is an internal
error, and neither shows its text (a server path) to the client.

Unit tests of ``gateway.faults``, the runner's use of it around providers and result
storage, and one job end to end through the HTTP API on the sandbox.
"""

from __future__ import annotations

import asyncio
import errno
import json
import logging
from pathlib import Path
from typing import Any

import httpx
import pytest

from gateway.catalog import parse_catalog
from gateway.errors import ProviderError, ProviderResourceExhausted
from gateway.faults import resource_shortage, unexpected_error
from gateway.jobs import Status
from gateway.scheduler.retry import RetryPolicy
from gateway.scheduler.runner import JobRunner
from gateway.service import JobRequest, JobService
from gateway.storage import LocalStorage, OutputSource
from gateway.store.sqlite import SQLiteJobStore
from providers import sandbox_media
from providers.base import Provider
from tests.api.support import running, submit_image
from tests.conftest import AUTH_A, make_settings
from tests.fakes import FakeProvider, fails, poll_raises, submit_fails, succeed, succeeded

VENV_PATH = "/srv/backserv/.venv/lib/python3.11/site-packages/PIL/fonts/DejaVuSans.ttf"
LOG = logging.getLogger("tests.faults")
POLICY = RetryPolicy(max_attempts=2, base=0.001, cap=0.01)
CATALOG = parse_catalog(
    {
        "models": [
            {"id": "one", "kind": "image", "routes": [{"provider": "fake", "target": "image"}]}
        ]
    },
    ["fake"],
    source="test-catalog",
)


def emfile() -> OSError:
    return OSError(errno.EMFILE, "Too many open files", VENV_PATH)


# -- classification ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("exc", "name"),
    [
        (emfile(), "EMFILE"),
        (OSError(errno.ENOSPC, "No space left on device"), "ENOSPC"),
        (OSError(errno.ENFILE, "Too many open files in system"), "ENFILE"),
        (MemoryError(), "ENOMEM"),
        (BlockingIOError(errno.EAGAIN, "Resource temporarily unavailable"), "EAGAIN"),
    ],
)
def test_a_resource_shortage_is_named_by_its_errno(exc: BaseException, name: str) -> None:
    assert resource_shortage(exc) == name


def test_a_shortage_an_exception_was_raised_from_counts() -> None:
    try:
        try:
            raise emfile()
        except OSError as inner:
            raise RuntimeError("could not open the font") from inner
    except RuntimeError as outer:
        assert resource_shortage(outer) == "EMFILE"


@pytest.mark.parametrize(
    "exc",
    [FileNotFoundError(errno.ENOENT, "No such file", "/x"), OSError("truncated"), KeyError("k")],
)
def test_errors_that_are_not_shortages_are_not_named(exc: BaseException) -> None:
    assert resource_shortage(exc) is None


def test_a_shortage_becomes_a_retryable_error_without_the_path() -> None:
    error = unexpected_error(emfile(), who="the sandbox", job_id="job-1", log=LOG)

    assert isinstance(error, ProviderResourceExhausted)
    assert error.code == "resource_exhausted"
    assert "EMFILE" in error.message and "temporary resource exhaustion" in error.message
    assert VENV_PATH not in error.message and "Too many open files" not in error.message


def test_an_unexpected_exception_becomes_a_generic_internal_error() -> None:
    error = unexpected_error(
        KeyError(f"secret detail at {VENV_PATH}"), who="the sandbox", job_id="job-1", log=LOG
    )

    assert type(error) is ProviderError
    assert error.code == "internal_provider_error"
    assert "secret detail" not in error.message and VENV_PATH not in error.message


# -- the runner -------------------------------------------------------------------------------


@pytest.fixture
def fake() -> FakeProvider:
    return FakeProvider("fake")


@pytest.fixture
def storage(tmp_path: Path) -> LocalStorage:
    return LocalStorage(tmp_path / "files", OutputSource(max_bytes=1_000_000))


@pytest.fixture
def runner(store: SQLiteJobStore, storage: LocalStorage, fake: FakeProvider) -> JobRunner:
    providers: dict[str, Provider] = {"fake": fake}
    return JobRunner(store, providers, storage, POLICY, job_timeout=30.0)


async def run_one(store: SQLiteJobStore, runner: JobRunner) -> dict[str, Any]:
    """Submit, claim and run one job; its public JSON (what a client reads)."""
    model = CATALOG.get("one")
    job, _ = await JobService(store, CATALOG).submit(
        JobRequest(owner="alice", model=model, input={"prompt": "a fox", "seed": 1})
    )
    [claimed] = await store.claim(model.lane, 1, "w1", 30.0)
    await runner.run(claimed, model)
    done = await store.get_job(job.id)
    assert done is not None
    return {"status": done.status, "error": done.error, "attempts": done.attempt_dicts()}


async def test_a_shortage_reported_by_the_provider_is_retried_past_max_attempts(
    runner: JobRunner, store: SQLiteJobStore, fake: FakeProvider
) -> None:
    shortage = unexpected_error(emfile(), who="the fake", job_id=None, log=LOG)
    fake.scripts = [fails(shortage) for _ in range(POLICY.max_attempts + 2)]

    job = await run_one(store, runner)

    assert job["status"] is Status.COMPLETED
    outcomes = [a["outcome"] for a in job["attempts"]]
    assert outcomes == ["failed"] * (POLICY.max_attempts + 2) + ["succeeded"]
    assert {a["error"]["code"] for a in job["attempts"][:-1]} == {"resource_exhausted"}
    assert runner.breakers.get("fake:image").state.value == "closed"  # no verdict on the route


async def test_an_os_error_raised_by_a_submit_is_retried_and_its_path_never_shown(
    runner: JobRunner, store: SQLiteJobStore, fake: FakeProvider
) -> None:
    fake.scripts = [submit_fails(emfile()), succeed()]

    job = await run_one(store, runner)

    assert job["status"] is Status.COMPLETED
    assert job["attempts"][0]["error"]["code"] == "resource_exhausted"
    assert VENV_PATH not in json.dumps(job, default=str)


async def test_an_os_error_raised_by_a_poll_keeps_following_the_request(
    runner: JobRunner, store: SQLiteJobStore, fake: FakeProvider
) -> None:
    fake.scripts = [poll_raises(emfile(), then=[succeeded()])]

    job = await run_one(store, runner)

    assert job["status"] is Status.COMPLETED
    assert len(fake.submits) == 1 and len(job["attempts"]) == 1


async def test_an_unexpected_exception_of_a_provider_shows_no_text(
    runner: JobRunner, store: SQLiteJobStore, fake: FakeProvider
) -> None:
    fake.scripts = [submit_fails(RuntimeError(f"adapter bug near {VENV_PATH}"))]

    job = await run_one(store, runner)

    assert job["status"] is Status.FAILED
    assert job["error"]["code"] == "internal_provider_error"
    assert "adapter bug" not in json.dumps(job, default=str)
    assert VENV_PATH not in json.dumps(job, default=str)


async def test_a_storage_write_failing_with_emfile_is_retried_without_running_again(
    runner: JobRunner, store: SQLiteJobStore, fake: FakeProvider, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = LocalStorage.write
    failures = [emfile(), OSError(errno.ENOSPC, "No space left on device", VENV_PATH)]

    async def flaky(self: LocalStorage, *args: Any) -> int:
        if failures:
            raise failures.pop(0)
        return await real(self, *args)

    monkeypatch.setattr(LocalStorage, "write", flaky)
    fake.scripts = [succeed()]

    job = await run_one(store, runner)

    assert job["status"] is Status.COMPLETED
    assert len(fake.submits) == 1  # the output in hand was stored again, nothing re-ran
    assert failures == []


# -- end to end: the sandbox behind the HTTP API -------------------------------------------


async def test_an_emfile_in_the_sandbox_is_retried_to_completed_and_no_path_is_shown(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = sandbox_media.render_image
    calls = 0

    def exhausted(*args: Any, **kwargs: Any) -> bytes:
        nonlocal calls
        calls += 1
        if calls <= 4:  # more failures than BACKSERV_MAX_ROUTE_ATTEMPTS allows other errors
            raise emfile()
        return real(*args, **kwargs)

    monkeypatch.setattr(sandbox_media, "render_image", exhausted)
    settings = make_settings(tmp_path, sandbox_latency=0.0, max_route_attempts=3)
    async with running(settings) as (client, _gateway):
        job = await submit_image(client)
        body = await settled(client, job["id"])

    assert body["status"] == "COMPLETED", body
    assert [a["outcome"] for a in body["attempts"]] == ["failed"] * 4 + ["succeeded"]
    assert body["attempts"][0]["error"]["code"] == "resource_exhausted"
    assert "EMFILE" in body["attempts"][0]["error"]["message"]
    assert VENV_PATH not in json.dumps(body) and "Too many open files" not in json.dumps(body)


async def settled(client: httpx.AsyncClient, job_id: str) -> dict[str, Any]:
    async with asyncio.timeout(20):
        while True:
            resp = await client.get(f"/v1/jobs/{job_id}?wait=5", headers=AUTH_A)
            body: dict[str, Any] = resp.json()
            if body["status"] in ("COMPLETED", "FAILED", "CANCELLED"):
                return body


async def test_a_storage_that_stays_full_fails_the_job_and_never_runs_it_again(
    store: SQLiteJobStore, fake: FakeProvider, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Past the job's deadline with the (paid) output still unsaved, the job fails naming the
    cause; the route is not retried, which would submit and pay again."""

    async def full(self: LocalStorage, *args: Any) -> int:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(LocalStorage, "write", full)
    storage = LocalStorage(tmp_path / "files", OutputSource(max_bytes=1_000_000))
    policy = RetryPolicy(max_attempts=3, base=0.01, cap=0.05)
    short = JobRunner(store, {"fake": fake}, storage, policy, job_timeout=0.5)
    fake.scripts = [succeed(), succeed(), succeed()]

    job = await run_one(store, short)

    assert job["status"] is Status.FAILED
    assert job["error"]["code"] == "result_not_stored"
    assert "ENOSPC" in job["error"]["message"]
    assert len(fake.submits) == 1  # never submitted (and paid for) again
