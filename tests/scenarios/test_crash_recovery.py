"""Crash recovery of the real gateway process against the fal emulator.

- ``kill -9`` at random moments, several times, while hundreds of jobs are submitted and run:
  no accepted job is lost, and the emulator never received more submissions for a job than
  its attempt log records.
- SIGTERM: the gateway stops claiming, hands running jobs back with their provider
  reference, exits promptly, and the next start resumes them by polling (no new submit).

The emulator runs in this test's event loop; the gateway is a ``backserv serve`` subprocess
(``tests/server.py``), so blocking calls on it (start, wait) go through ``asyncio.to_thread``
to keep the emulator answering meanwhile.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import random
import signal
import sqlite3
import time
from collections import Counter, defaultdict
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from tests.emulators.fal import create_fal_app
from tests.emulators.server import serve
from tests.server import Server, free_port, start_server

API_KEY = "crash-key"
AUTH = {"Authorization": f"Bearer {API_KEY}"}
MODEL = "flux-fal"
TERMINAL = ("COMPLETED", "FAILED", "CANCELLED")
CATALOG = f"""
[[models]]
id = "{MODEL}"
kind = "image"
description = "FLUX on the fal emulator only."

[[models.routes]]
provider = "fal"
target = "fal-ai/flux/dev"
options = {{ size = "image_size" }}
"""


def gateway_env(workdir: Path, fal_url: str) -> dict[str, str]:
    catalog = workdir / "catalog.toml"
    catalog.write_text(CATALOG)
    return {
        "FAL_KEY": "fal-crash-key",
        "BACKSERV_FAL_QUEUE_URL": fal_url,
        "BACKSERV_FETCH_ALLOW": "127.0.0.1",  # the emulator serves outputs on loopback
        "BACKSERV_CATALOG_PATH": str(catalog),
        "BACKSERV_API_KEYS": API_KEY,
        "BACKSERV_LEASE_SECONDS": "2",
        "BACKSERV_HEARTBEAT_SECONDS": "0.5",
        "BACKSERV_SCHEDULER_POLL_SECONDS": "0.2",
        "BACKSERV_PROVIDER_POLL_SECONDS": "0.2",
        "BACKSERV_PROVIDER_TIMEOUT_SECONDS": "10",
        "BACKSERV_RETRY_BASE_SECONDS": "0.05",
        "BACKSERV_PROVIDER_CONCURRENCY": '{"fal": 32}',
        "BACKSERV_LOG_LEVEL": "warning",
    }


class Gateway:
    """The current gateway process; survives restarts (same port, database and files)."""

    def __init__(self, server: Server) -> None:
        self.server = server
        self.pids = [server.pid]

    @classmethod
    async def start(cls, workdir: Path, env: dict[str, str]) -> Gateway:
        return cls(await asyncio.to_thread(start_server, workdir, env, free_port()))

    @property
    def url(self) -> str:
        return self.server.url

    async def kill_9(self) -> int:
        os.kill(self.server.pid, signal.SIGKILL)
        return await asyncio.to_thread(self.server.process.wait, 10)

    async def restart(self) -> None:
        self.server = await asyncio.to_thread(self.server.restart)
        self.pids.append(self.server.pid)

    async def sigterm(self, timeout: float) -> tuple[int, float]:
        """Send SIGTERM; return the exit code and how long the process took to exit."""
        started = time.monotonic()
        self.server.process.send_signal(signal.SIGTERM)
        code = await asyncio.to_thread(self.server.process.wait, timeout)
        return code, time.monotonic() - started

    def cleanup(self) -> None:
        """Never leave a server running, whatever happened to the test."""
        if self.server.process.poll() is None:
            self.server.process.kill()
            self.server.process.wait(10)

    def diagnostics(self) -> str:
        return f"gateway pids {self.pids}; server log tail:\n{self.server.log_tail(80)}"


@contextlib.asynccontextmanager
async def gateway_running(workdir: Path, env: dict[str, str]) -> AsyncIterator[Gateway]:
    gateway = await Gateway.start(workdir, env)
    try:
        yield gateway
    finally:
        gateway.cleanup()


async def list_all_jobs(
    client: httpx.AsyncClient, status: str | None = None
) -> list[dict[str, Any]]:
    """Every job of the key, following the list's cursor."""
    jobs: list[dict[str, Any]] = []
    after: str | None = None
    while True:
        params: dict[str, Any] = {"limit": 100}
        if after:
            params["after"] = after
        if status:
            params["status"] = status
        resp = await client.get("/v1/jobs", params=params, headers=AUTH)
        assert resp.status_code == 200, resp.text
        page = resp.json()
        jobs.extend(page["jobs"])
        if not page["has_more"]:
            return jobs
        after = page["last_id"]


async def poll_until(
    check: Callable[[], Any], timeout: float, what: str, diagnostics: Callable[[], str]
) -> Any:
    """Await ``check()`` until it returns something truthy; fail with diagnostics after
    ``timeout`` seconds. Transport errors (a server restarting) count as not yet."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while True:
        with contextlib.suppress(httpx.TransportError):
            last = await check()
            if last:
                return last
        if time.monotonic() > deadline:
            raise AssertionError(
                f"{what} not reached in {timeout}s (last: {last!r})\n{diagnostics()}"
            )
        await asyncio.sleep(0.1)


def fal_attempts(job: dict[str, Any]) -> list[dict[str, Any]]:
    return [a for a in job["attempts"] if a["provider"] == "fal"]


def submissions_by_job(emulator: Any) -> dict[str, list[Any]]:
    by_job: dict[str, list[Any]] = defaultdict(list)
    for entry in emulator.requests("submit"):
        by_job[entry.headers.get("x-backserv-job-id", "<no job id header>")].append(entry)
    return by_job


def assert_never_paid_twice(jobs: list[dict[str, Any]], emulator: Any) -> dict[str, int]:
    """Per job: submissions received <= fal attempts logged; every request id in the log is
    one the emulator gave that job; no submission for a job the gateway does not know.

    An accepted request whose id is *not* in the log is allowed only for an attempt that has
    no request id (the documented window: the gateway died, or the job was cancelled, after
    the POST went out and before the answer was recorded); the count check bounds those.
    Returns counters for the test's diagnostics."""
    by_job = submissions_by_job(emulator)
    known = {j["id"] for j in jobs}
    unknown = set(by_job) - known
    assert not unknown, f"submissions for jobs the gateway does not know: {sorted(unknown)}"
    stats: Counter[str] = Counter()
    for job in jobs:
        attempts = fal_attempts(job)
        received = by_job.get(job["id"], [])
        accepted = {r.request_id for r in received if r.request_id}
        logged = [a["request_id"] for a in attempts if a["request_id"]]
        assert len(received) <= len(attempts), (
            f"job {job['id']}: the emulator received {len(received)} submissions but the "
            f"attempt log has {len(attempts)} fal attempts: {job['attempts']}"
        )
        assert len(set(logged)) == len(logged), f"job {job['id']}: a request id logged twice"
        assert set(logged) <= accepted, (
            f"job {job['id']}: logged request ids {logged} were not all accepted by the "
            f"emulator for this job ({sorted(accepted)})"
        )
        without_ref = [a for a in attempts if not a["request_id"]]
        unlogged = accepted - set(logged)
        assert len(unlogged) <= len(without_ref), (job["id"], unlogged, job["attempts"])
        stats["jobs"] += 1
        stats["attempts"] += len(attempts)
        stats["submissions"] += len(received)
        stats["accepted_but_unlogged"] += len(unlogged)
        stats["interrupted_attempts"] += sum(a["outcome"] == "interrupted" for a in attempts)
        stats["jobs_with_several_attempts"] += len(attempts) > 1
        for a in without_ref:
            stats[f"attempts_without_request_id:{a['outcome']}"] += 1
    return dict(stats)


@dataclass
class Load:
    """What the clients did: ids that got a 202, and how each cancel was answered."""

    accepted: list[str] = field(default_factory=list)
    failed_submits: Counter[str] = field(default_factory=Counter)
    cancels: dict[str, int | str] = field(default_factory=dict)  # id -> HTTP status or error


async def test_kill_9_at_random_moments_loses_no_accepted_job(tmp_path: Path) -> None:
    seed = int(os.environ.get("BACKSERV_CRASH_SEED") or random.SystemRandom().randrange(2**32))
    print(f"crash test seed: {seed} (rerun with BACKSERV_CRASH_SEED={seed})")
    rng = random.Random(seed)
    total_jobs, submitters, kills, cancels = 300, 6, 3, 10
    # the kill moments (s after the first submit, at least 1.5 s apart) depend on the seed only
    kill_at = sorted(rng.uniform(1.0, 12.0) for _ in range(kills))
    for i in range(1, kills):
        kill_at[i] = max(kill_at[i], kill_at[i - 1] + 1.5)
    print(f"kill -9 planned at {[round(t, 2) for t in kill_at]} s")
    latency_rng, cancel_rng = random.Random(rng.random()), random.Random(rng.random())
    submitter_seeds = [rng.randrange(2**32) for _ in range(submitters)]
    fal_app = create_fal_app()
    emulator = fal_app.state.emulator
    emulator.configure(latency=0.6)
    async with (
        serve(fal_app) as fal_url,
        gateway_running(tmp_path, gateway_env(tmp_path, fal_url)) as gateway,
    ):
        load = Load()
        limits = httpx.Limits(max_connections=32, max_keepalive_connections=16)
        timeout = httpx.Timeout(10.0, connect=2.0)
        async with httpx.AsyncClient(
            base_url=gateway.url, limits=limits, timeout=timeout
        ) as client:
            stop = asyncio.Event()

            async def submitter(worker_rng: random.Random) -> None:
                while len(load.accepted) < total_jobs:
                    body = {"model": MODEL, "prompt": "a lighthouse", "width": 64, "height": 64}
                    try:
                        resp = await client.post("/v1/jobs/images", json=body, headers=AUTH)
                    except httpx.TransportError as exc:  # the server is down: not accepted
                        load.failed_submits[type(exc).__name__] += 1
                    else:
                        if resp.status_code == 202:
                            load.accepted.append(resp.json()["id"])
                        else:
                            load.failed_submits[str(resp.status_code)] += 1
                    await asyncio.sleep(worker_rng.uniform(0.05, 0.25))

            async def vary_latency() -> None:
                while not stop.is_set():
                    emulator.configure(latency=latency_rng.uniform(0.3, 1.0))
                    await asyncio.sleep(0.1)

            async def canceller() -> None:
                while len(load.cancels) < cancels and not stop.is_set():
                    await asyncio.sleep(cancel_rng.uniform(0.2, 0.8))
                    candidates = [j for j in load.accepted if j not in load.cancels]
                    if not candidates:
                        continue
                    job_id = cancel_rng.choice(candidates)
                    try:
                        resp = await client.post(f"/v1/jobs/{job_id}/cancel", headers=AUTH)
                        load.cancels[job_id] = resp.status_code
                    except httpx.TransportError as exc:
                        load.cancels[job_id] = type(exc).__name__

            async def killer() -> None:
                """Kill -9 at the planned moments, restarting on the same database each time."""
                began = time.monotonic()
                for at in kill_at:
                    await asyncio.sleep(max(0.0, began + at - time.monotonic()))
                    running = len(emulator.requests("submit"))
                    code = await gateway.kill_9()
                    print(
                        f"kill -9 at {time.monotonic() - began:.2f}s (pid exit {code}); "
                        f"{len(load.accepted)} accepted, {running} fal submissions so far"
                    )
                    assert code == -signal.SIGKILL
                    await gateway.restart()

            started = time.monotonic()
            latency_task = asyncio.create_task(vary_latency())
            try:
                # a TaskGroup: if one part fails (a restart, say), the others are cancelled
                async with asyncio.TaskGroup() as group:
                    group.create_task(killer())
                    group.create_task(canceller())
                    for worker_seed in submitter_seeds:
                        group.create_task(submitter(random.Random(worker_seed)))
            finally:
                stop.set()
                await latency_task
            submitted_in = time.monotonic() - started
            print(
                f"{len(load.accepted)} jobs accepted in {submitted_in:.1f}s; failed submits: "
                f"{dict(load.failed_submits)}; cancels: {load.cancels}"
            )

            async def all_terminal() -> bool:
                for status in ("QUEUED", "PROCESSING"):
                    resp = await client.get(
                        "/v1/jobs", params={"status": status, "limit": 1}, headers=AUTH
                    )
                    if resp.status_code != 200 or resp.json()["jobs"]:
                        return False
                return True

            await poll_until(all_terminal, 90, "every job terminal", gateway.diagnostics)
            print(f"every job terminal {time.monotonic() - started:.1f}s after the first submit")
            jobs = await list_all_jobs(client)

        by_id = {j["id"]: j for j in jobs}
        lost = [j for j in load.accepted if j not in by_id]
        assert not lost, f"accepted jobs the gateway lost: {lost}\n{gateway.diagnostics()}"
        assert len(set(load.accepted)) == len(load.accepted)
        wrong: list[tuple[str, str, Any]] = []
        for job in jobs:
            answer = load.cancels.get(job["id"])
            if answer == 200:
                expected: tuple[str, ...] = ("CANCELLED",)
            elif answer == 409:
                expected = ("COMPLETED",)  # it had finished before the cancel arrived
            elif answer is not None:  # the cancel's answer was lost with the server
                expected = ("COMPLETED", "CANCELLED")
            else:
                expected = ("COMPLETED",)
            if job["status"] not in expected:
                wrong.append((job["id"], job["status"], job.get("error") or job["attempts"]))
        assert not wrong, f"jobs that ended wrong: {wrong}\n{gateway.diagnostics()}"
        assert {a for a in load.cancels.values() if a not in (200, 409)} <= {
            "ConnectError",
            "ReadError",
            "RemoteProtocolError",
            "ReadTimeout",
        }, load.cancels
        stats = assert_never_paid_twice(jobs, emulator)
        print(f"{len(jobs)} jobs in the gateway ({len(load.accepted)} acknowledged): {stats}")
        assert len(gateway.pids) == kills + 1


def read_jobs_from_db(db_path: Path) -> dict[str, dict[str, Any]]:
    with contextlib.closing(sqlite3.connect(db_path)) as conn:
        rows = conn.execute(
            "SELECT id, status, attempts, lease_owner, lease_expires FROM jobs"
        ).fetchall()
    return {
        job_id: {
            "status": status,
            "attempts": json.loads(attempts),
            "lease_owner": owner,
            "lease_expires": expires,
        }
        for job_id, status, attempts, owner, expires in rows
    }


async def test_sigterm_hands_running_jobs_back_and_exits_promptly(tmp_path: Path) -> None:
    # the emulator's clock can be moved forward: its jobs are planned timelines read off it
    offset = [0.0]
    fal_app = create_fal_app(clock=lambda: time.time() + offset[0])
    emulator = fal_app.state.emulator
    emulator.configure(latency=30.0)
    async with (
        serve(fal_app) as fal_url,
        gateway_running(tmp_path, gateway_env(tmp_path, fal_url)) as gateway,
    ):
        async with httpx.AsyncClient(base_url=gateway.url, timeout=10) as client:
            ids = []
            for _ in range(10):
                body = {"model": MODEL, "prompt": "a lighthouse", "width": 64, "height": 64}
                resp = await client.post("/v1/jobs/images", json=body, headers=AUTH)
                assert resp.status_code == 202, resp.text
                ids.append(resp.json()["id"])

            async def all_submitted() -> dict[str, str] | None:
                refs = {}
                for job_id in ids:
                    job = (await client.get(f"/v1/jobs/{job_id}", headers=AUTH)).json()
                    last = job["attempts"][-1] if job["attempts"] else None
                    if job["status"] != "PROCESSING" or not (last and last["request_id"]):
                        return None
                    refs[job_id] = last["request_id"]
                return refs

            refs = await poll_until(all_submitted, 15, "all jobs submitted", gateway.diagnostics)
        assert emulator.submit_count() == 10

        code, took = await gateway.sigterm(timeout=20)
        print(f"SIGTERM: exit code {code} after {took:.2f}s")
        assert took < 15, f"exit took {took:.1f}s\n{gateway.diagnostics()}"
        first_exit = (code, gateway.diagnostics())  # its code is checked last, after the rest

        stored = read_jobs_from_db(tmp_path / "backserv.db")
        assert not emulator.requests("cancel"), "handing back must not cancel at the provider"
        for job_id, request_id in refs.items():
            job = stored[job_id]
            assert job["status"] == "QUEUED", (job_id, job)
            assert job["lease_owner"] is None, (job_id, job)
            [attempt] = job["attempts"]
            assert attempt["request_id"] == request_id, (job_id, job)
            assert attempt["ended_at"] is None, (job_id, job)  # still open, to be resumed

        offset[0] += 60.0  # every request fal already has is now finished
        await gateway.restart()
        async with httpx.AsyncClient(base_url=gateway.url, timeout=10) as client:

            async def all_completed() -> list[dict[str, Any]] | None:
                jobs = [(await client.get(f"/v1/jobs/{j}", headers=AUTH)).json() for j in ids]
                return jobs if all(j["status"] in TERMINAL for j in jobs) else None

            jobs = await poll_until(all_completed, 20, "all jobs completed", gateway.diagnostics)
        for job in jobs:
            assert job["status"] == "COMPLETED", job
            [attempt] = job["attempts"]
            assert attempt["request_id"] == refs[job["id"]], job
            assert attempt["outcome"] == "succeeded", job
        assert emulator.submit_count(accepted_only=False) == 10, "a handed-back job was resubmitted"
        assert_never_paid_twice(jobs, emulator)

        code, took = await gateway.sigterm(timeout=20)
        assert took < 15, f"exit took {took:.1f}s\n{gateway.diagnostics()}"
    # a graceful shutdown that handed everything back is a clean exit: status 0
    assert first_exit[0] == 0, f"exit code {first_exit[0]} after SIGTERM\n{first_exit[1]}"
    assert code == 0, f"exit code {code} after the second SIGTERM"
