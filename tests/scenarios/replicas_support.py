"""Helpers for the multi-replica tests: replicas and emulator records.

Each replica is a real ``backserv serve`` subprocess (``tests.server.start_server``) on one
PostgreSQL database, with its own work directory (logs) but the same storage directory and
secret key, as a deployment behind a load balancer would run them. The throw-away database
they share comes from ``tests.postgres.fresh_database``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import secrets
import signal
import subprocess
import time
from collections import defaultdict
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import httpx

from tests.emulators.fal import FalEmulator
from tests.emulators.requestlog import LoggedRequest
from tests.server import Server, start_server

KEY = "replica-test-key"
AUTH = {"Authorization": f"Bearer {KEY}"}
MODEL = "flux-fal"
CATALOG = f"""
[[models]]
id = "{MODEL}"
kind = "image"
[[models.routes]]
provider = "fal"
target = "fal-ai/flux/dev"
options = {{ size = "image_size" }}
"""
JOB_HEADER = "x-backserv-job-id"
FAL_KEY_PREFIX = "fal-key-of-replica-"


# -- the replicas -------------------------------------------------------------------------------


class Replicas:
    """``count`` gateway processes on one database, and an HTTP client for each."""

    def __init__(self, servers: list[Server]) -> None:
        self.servers = servers
        # idle connections expire well before uvicorn's 5 s keep-alive timeout, so a request
        # never goes out on a connection the server is closing (httpx's default is also 5 s)
        limits = httpx.Limits(keepalive_expiry=1.0)
        self.clients = [
            httpx.AsyncClient(base_url=s.url, headers=AUTH, timeout=30, limits=limits)
            for s in servers
        ]

    def alive(self) -> list[int]:
        return [i for i, s in enumerate(self.servers) if s.process.poll() is None]

    async def kill(self, index: int) -> None:
        """SIGKILL: no shutdown hook runs, no lease is handed back."""
        await asyncio.to_thread(self.servers[index].stop, signal.SIGKILL)

    async def close(self) -> None:
        for client in self.clients:
            await client.aclose()
        await asyncio.gather(*(asyncio.to_thread(_stop, s) for s in self.servers))

    def logs(self) -> str:
        return "\n".join(f"--- replica {i}:\n{s.log()[-4000:]}" for i, s in enumerate(self.servers))


def _stop(server: Server) -> None:
    try:
        server.stop(signal.SIGTERM, timeout=20)
    except subprocess.TimeoutExpired:
        server.stop(signal.SIGKILL)


@contextlib.asynccontextmanager
async def replicas(
    tmp_path: Path,
    database_url: str,
    fal_url: str,
    *,
    count: int,
    fal_limit: int,
    env_of: Callable[[int], dict[str, str]] | None = None,
) -> AsyncIterator[Replicas]:
    """``count`` replicas; ``env_of(i)`` adds to (or overrides) replica i's environment."""
    catalog = tmp_path / "catalog.toml"
    catalog.write_text(CATALOG)
    env = {
        "BACKSERV_FAL_QUEUE_URL": fal_url,
        "BACKSERV_FETCH_ALLOW": "127.0.0.1",  # the emulator serves outputs on loopback
        "BACKSERV_DATABASE_URL": database_url,
        "BACKSERV_CATALOG_PATH": str(catalog),
        "BACKSERV_API_KEYS": KEY,
        "BACKSERV_SECRET_KEY": secrets.token_hex(32),
        "BACKSERV_STORAGE_DIR": str(tmp_path / "shared-files"),
        "BACKSERV_LEASE_SECONDS": "2",
        "BACKSERV_HEARTBEAT_SECONDS": "0.5",
        "BACKSERV_SCHEDULER_POLL_SECONDS": "0.5",
        "BACKSERV_PROVIDER_POLL_SECONDS": "0.2",
        "BACKSERV_PROVIDER_CONCURRENCY": json.dumps({"fal": fal_limit}),
        # one key stands for many users here: the per-key limits are not what is tested
        "BACKSERV_RATE_LIMIT_PER_SECOND": "0",
        "BACKSERV_MAX_ACTIVE_JOBS_PER_KEY": "0",
    }
    workdirs = [tmp_path / f"replica-{i}" for i in range(count)]
    for workdir in workdirs:
        workdir.mkdir()
    # one fal key per replica: the emulator logs it, so it tells which replica sent what
    started = await asyncio.gather(
        *(
            asyncio.to_thread(
                start_server,
                w,
                {**env, "FAL_KEY": f"{FAL_KEY_PREFIX}{i}", **(env_of(i) if env_of else {})},
            )
            for i, w in enumerate(workdirs)
        ),
        return_exceptions=True,
    )
    servers = [s for s in started if isinstance(s, Server)]
    group = Replicas(servers)
    try:
        for outcome in started:
            if isinstance(outcome, BaseException):
                raise outcome
        yield group
    finally:
        await group.close()


# -- jobs through the API -----------------------------------------------------------------------


async def submit_round_robin(clients: list[httpx.AsyncClient], count: int) -> list[str]:
    """Submit ``count`` image jobs, job i through replica ``i % len(clients)``."""
    gate = asyncio.Semaphore(24)

    async def one(i: int) -> str:
        body = {"model": MODEL, "prompt": f"lighthouse {i}", "width": 64, "height": 64}
        async with gate:
            resp = await clients[i % len(clients)].post("/v1/jobs/images", json=body)
        assert resp.status_code == 202, resp.text
        job_id: str = resp.json()["id"]
        return job_id

    return list(await asyncio.gather(*(one(i) for i in range(count))))


async def all_jobs(client: httpx.AsyncClient) -> dict[str, dict[str, Any]]:
    """Every job of the test key, by id, through the list endpoint (pages of 100)."""
    jobs: dict[str, dict[str, Any]] = {}
    params: dict[str, Any] = {"limit": 100}
    while True:
        resp = await client.get("/v1/jobs", params=params)
        assert resp.status_code == 200, resp.text
        page = resp.json()
        jobs.update((j["id"], j) for j in page["jobs"])
        if not page["has_more"]:
            return jobs
        params["after"] = page["last_id"]


async def until_all_terminal(
    client: httpx.AsyncClient, ids: list[str], timeout: float, describe: Callable[[], str]
) -> dict[str, dict[str, Any]]:
    deadline = time.monotonic() + timeout
    terminal = {"COMPLETED", "FAILED", "CANCELLED"}
    while True:
        jobs = await all_jobs(client)
        statuses = [jobs[i]["status"] if i in jobs else "MISSING" for i in ids]
        if all(s in terminal for s in statuses):
            return jobs
        if time.monotonic() > deadline:
            counts = {s: statuses.count(s) for s in set(statuses)}
            raise AssertionError(
                f"jobs still not finished after {timeout}s: {counts}\n{describe()}"
            )
        await asyncio.sleep(0.5)


# -- what the emulator saw ----------------------------------------------------------------------


def accepted_submits(fal: FalEmulator) -> dict[str, list[LoggedRequest]]:
    """Accepted fal submissions (a request id was issued) by gateway job id, oldest first."""
    by_job: dict[str, list[LoggedRequest]] = defaultdict(list)
    for entry in fal.requests("submit"):
        if entry.request_id:
            by_job[entry.headers.get(JOB_HEADER, "?")].append(entry)
    for entries in by_job.values():
        entries.sort(key=lambda e: e.time)
    return dict(by_job)


def replica_of(headers: dict[str, str]) -> int:
    """Which replica sent a request, from its fal key (``Authorization: Key ...``)."""
    return int(headers["authorization"].removeprefix("Key " + FAL_KEY_PREFIX))


def calls_by_job(fal: FalEmulator) -> dict[str, list[tuple[float, int]]]:
    """Every call the emulator got about each job's requests: (time, replica), by job id."""
    job_of = {s.request_id: job_id for job_id, subs in accepted_submits(fal).items() for s in subs}
    calls: dict[str, list[tuple[float, int]]] = defaultdict(list)
    for entry in fal.requests():
        job_id = job_of.get(entry.request_id or "")
        if job_id is not None:
            calls[job_id].append((entry.time, replica_of(entry.headers)))
    for entries in calls.values():
        entries.sort()
    return dict(calls)


def first_result_fetch(fal: FalEmulator) -> dict[str, float]:
    """When the gateway first read each request's result (GET of the response URL)."""
    fetched: dict[str, float] = {}
    for entry in fal.requests("result"):
        if entry.request_id and entry.status == 200:
            fetched.setdefault(entry.request_id, entry.time)
    return fetched


def peak_in_flight(fal: FalEmulator, end: float) -> int:
    """The most fal requests in flight at once, as the emulator saw them.

    A request is in flight from the arrival of its accepted submit until the gateway's first
    successful GET of its result (or ``end`` if it never got one). The gateway submits only
    after its claim committed (the job PROCESSING) and reads the result before its finish
    commits, so each interval lies inside one PROCESSING stretch of its job: the peak counted
    here can only be below, never above, the number of the lane's jobs PROCESSING at once.
    Ends sort before starts at equal times (a slot handed straight on is not two at once).
    """
    fetched = first_result_fetch(fal)
    events: list[tuple[float, int]] = []
    for entries in accepted_submits(fal).values():
        for entry in entries:
            assert entry.request_id is not None
            events.append((entry.time, 1))
            events.append((fetched.get(entry.request_id, end), -1))
    peak = running = 0
    for _, delta in sorted(events):
        running += delta
        peak = max(peak, running)
    return peak
