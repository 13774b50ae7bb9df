"""Target 3: end to end, jobs submitted over HTTP and run to COMPLETED, against Celery.

The gateway side submits ``jobs`` jobs to ``sandbox-image-fast`` (zero latency) through the
harness's own keep-alive client (``bench/rawhttp.py``) with ``concurrency`` connections
(spread over every replica), and the clock stops when all are COMPLETED, read from the
database itself (no HTTP polling). The Celery side sends as many no-op tasks (Redis broker
and results) and stops when all results are stored.

Not httpx: on these 2 cores an httpx client with 64 connections managed about 90 submits/s
against the bare Starlette app itself (p50 210 ms, outliers of seconds), so it measured the
client; the raw client sends the same requests at well over 1,000/s.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import orjson

from bench.profiles import finish_recording, start_recording
from bench.rawhttp import HTTPError, Pool
from bench.servers import AUTH, JOB, ROOT, BenchError, gateways
from bench.store_reads import job_counter, until_finished

#: seconds one submit may take before it counts as failed
SUBMIT_TIMEOUT = 60.0


@dataclass
class E2E:
    jobs: int  # run to COMPLETED
    submit_seconds: float
    total_seconds: float
    lost: int = 0  # submits that failed (transport error or not 202)
    lost_why: str = ""

    @property
    def jobs_per_second(self) -> float:
        return self.jobs / self.total_seconds

    @property
    def submits_per_second(self) -> float:
        return self.jobs / self.submit_seconds

    def line(self, label: str, asked: int) -> str:
        text = (
            f"{label}{self.jobs:,} jobs submitted over HTTP and run to COMPLETED: "
            f"**{self.jobs_per_second:,.0f} jobs/s** ({self.total_seconds:.1f} s; submits "
            f"alone {self.submits_per_second:,.0f}/s)."
        )
        if self.lost:
            text += (
                f" **{self.lost:,} of {asked:,} submits failed** (first: "
                f"`{self.lost_why[:160]}`); the figure counts the completed jobs only."
            )
        return text


async def submit_all(urls: list[str], jobs: int, concurrency: int) -> list[str]:
    """Submit ``jobs`` jobs, worker i through ``urls[i % len(urls)]``; the failed submits'
    reasons (a failure does not stop the run)."""
    failures: list[str] = []
    per = max(1, concurrency // len(urls))
    pools = [Pool(url, AUTH, size=per) for url in urls]
    body = orjson.dumps(JOB)
    remaining = iter(range(jobs))

    async def worker(pool: Pool) -> None:
        for _ in remaining:
            try:
                status, answer = await asyncio.wait_for(
                    pool.post_json("/v1/jobs/images", body), SUBMIT_TIMEOUT
                )
            except (OSError, TimeoutError, asyncio.IncompleteReadError, HTTPError) as exc:
                failures.append(repr(exc))
                continue
            if status != 202:
                failures.append(f"HTTP {status}: {answer[:200].decode(errors='replace')}")

    try:
        await asyncio.gather(*(worker(pools[i % len(pools)]) for i in range(concurrency)))
    finally:
        for pool in pools:
            pool.close()
    return failures


async def _run(
    urls: list[str], database_url: str, jobs: int, concurrency: int, timeout: float
) -> E2E:
    async with job_counter(database_url) as count:
        start = time.perf_counter()
        failures = await submit_all(urls, jobs, concurrency)
        submitted = time.perf_counter() - start
        counts = await until_finished(count, timeout, "e2e")
        elapsed = time.perf_counter() - start
    if counts.get("FAILED") or counts.get("CANCELLED"):
        raise BenchError(f"e2e: jobs did not complete: {counts}")
    why = failures[0] if failures else ""
    return E2E(counts.get("COMPLETED", 0), submitted, elapsed, len(failures), why)


def bench_e2e(
    workdir: Path,
    env: dict[str, str],
    jobs: int,
    concurrency: int,
    timeout: float,
    *,
    replicas: int = 1,
    profile: list[str] | None = None,
    profile_seconds: float = 10.0,
) -> E2E:
    """The gateway side of target 3, on the database ``env`` names (SQLite in ``workdir``
    when it names none); the database must hold no other jobs. With ``profile``, py-spy
    records the (first) gateway for ``profile_seconds`` from the first submit, and its top
    costs are appended to it."""
    with gateways(workdir, env, replicas) as gws:
        database_url = env.get("BACKSERV_DATABASE_URL", f"sqlite:///{workdir / 'backserv.db'}")
        urls = [gw.url for gw in gws]
        out = workdir / "e2e-profile.txt"
        spy = None if profile is None else start_recording(gws[0].pid, profile_seconds, out)
        result = asyncio.run(_run(urls, database_url, jobs, concurrency, timeout))
        if profile is not None:
            profile += finish_recording(spy, out)
        return result


def bench_celery(workdir: Path, jobs: int, timeout: float) -> E2E | str:
    """The same count of no-op Celery tasks (Redis broker and results); a str says why not."""
    try:
        import celery  # noqa: F401
        import redis
    except ImportError:
        print("celery is missing; pip-installing celery[redis] into this venv", file=sys.stderr)
        pip = [sys.executable, "-m", "pip", "install", "--quiet", "--disable-pip-version-check"]
        if subprocess.run([*pip, "celery[redis]"], check=False, timeout=300).returncode:
            return "not run: celery[redis] could not be installed"
        import redis
    from bench.celery_app import BACKEND_DB, BROKER_DB, REDIS, app, noop

    results = redis.Redis.from_url(f"{REDIS}/{BACKEND_DB}")
    try:
        results.ping()
    except redis.RedisError as exc:
        return f"not run: no Redis at {REDIS} ({exc})"
    redis.Redis.from_url(f"{REDIS}/{BROKER_DB}").flushdb()
    results.flushdb()
    nproc = os.cpu_count() or 1
    cmd = [sys.executable, "-m", "celery", "-A", "bench.celery_app", "worker"]
    cmd += ["--pool=prefork", f"--concurrency={nproc}", "--loglevel=warning", "--without-gossip"]
    cmd += ["--without-mingle", "--without-heartbeat"]
    log = (workdir / "celery.log").open("ab")
    worker = subprocess.Popen(cmd, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT)
    try:
        noop.delay().get(timeout=60)  # the worker is up and warm
        results.flushdb()
        start = time.perf_counter()
        with app.producer_or_acquire() as producer:
            for _ in range(jobs):
                noop.apply_async(producer=producer)
        submitted = time.perf_counter() - start
        deadline = time.monotonic() + timeout
        while (done := int(results.dbsize())) < jobs:
            if time.monotonic() > deadline:
                return f"not finished: {done}/{jobs} tasks in {timeout:g} s"
            time.sleep(0.02)
        return E2E(jobs, submitted, time.perf_counter() - start)
    finally:
        worker.terminate()
        try:
            worker.wait(20)
        except subprocess.TimeoutExpired:
            worker.kill()
            worker.wait(10)
