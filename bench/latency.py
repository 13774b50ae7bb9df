"""Target 5: submit -> provider-submit latency (queue time when idle) at a paced rate.

Submits to ``bench-fal`` (the fal emulator, ``bench/emulator.py``) are sent open-loop: the
i-th goes out at ``start + i / rate`` whatever happened to the earlier ones, each on a free
keep-alive connection (more are opened as needed), so a slow answer delays nothing after it
(wrk's closed loop would wait, and hide the queueing). The fal lane allows every job at
once, so the queue is idle: what is measured is the dispatch path.

The latency of a job is from the moment its submit was written to the socket
(``time.time()`` in the harness) to the moment the emulator's submit handler received the
gateway's request for it (``time.time()`` there: its request log, matched to the job by the
``X-Backserv-Job-Id`` header); both processes read the same machine clock. The jobs' own
records are not exact enough to replace it: the API shows ``created_at`` in whole seconds.
They do split it in two, read from the SQLite file (``created_at`` and the first attempt's
``started_at``, both floats there): HTTP and insert before the job exists, then the
scheduler's wake-up and claim up to the attempt, then the provider call itself.
"""

from __future__ import annotations

import asyncio
import json
import math
import time
from dataclasses import dataclass, field
from pathlib import Path

from bench.emulator import FAL_JOB, Emulator, fal_rig, submits_by_job
from bench.rawhttp import Pool, Spread
from bench.servers import AUTH, BenchError, say
from bench.stats import ms, percentile, verdict
from bench.store_reads import (
    health_text,
    job_counter,
    sqlite_job_times,
    sqlite_run_health,
    until_finished,
)

P50_LIMIT_MS, P99_LIMIT_MS = 5.0, 50.0


@dataclass
class Latency:
    rate: float
    seconds: float
    latency: float  # of a run at the emulator
    wait: float  # most seconds waited for the last submits to reach the provider
    sent: dict[str, float] = field(default_factory=dict)  # job id -> written at
    failures: list[str] = field(default_factory=list)
    late_sends: int = 0  # sends more than 5 ms behind their schedule
    send_span: float = 0.0  # first send to last send
    total_ms: list[float] = field(default_factory=list)  # client -> provider, per job
    missing: int = 0  # jobs that never reached the provider
    before_ms: list[float] = field(default_factory=list)  # client -> created_at
    queue_ms: list[float] = field(default_factory=list)  # created_at -> attempt opened
    call_ms: list[float] = field(default_factory=list)  # attempt opened -> provider received
    health: str = ""

    def lines(self) -> list[str]:
        samples = self.total_ms + [math.inf] * self.missing
        p50, p99 = percentile(samples, 50), percentile(samples, 99)
        met = p50 < P50_LIMIT_MS and p99 < P99_LIMIT_MS
        achieved = len(self.sent) / self.send_span if self.send_span else 0.0
        line = (
            f"5. Submit → provider-submit latency at {self.rate:,.0f} submits/s (open-loop, "
            f"{len(self.sent):,} jobs over {self.send_span:.1f} s, achieved "
            f"{achieved:,.0f}/s), p50 < {P50_LIMIT_MS:g} ms and p99 < {P99_LIMIT_MS:g} ms: "
            f"{verdict(met)}. p50 **{ms(p50)}**, p99 **{ms(p99)}** (max "
            f"{ms(max(samples, default=math.nan))})."
        )
        if self.missing:
            line += (
                f" **{self.missing:,} jobs had not reached the provider {self.wait:g} s after the "
                "last send** (counted as infinite)."
            )
        if self.failures:
            line += f" {len(self.failures):,} submits failed (first: `{self.failures[0][:160]}`)."
        if self.late_sends:
            line += (
                f" {self.late_sends:,} sends left more than 5 ms behind schedule (the client "
                "was starved of CPU)."
            )
        parts = (
            ("HTTP and insert (sent → `created_at`)", self.before_ms),
            ("scheduler (`created_at` → attempt opened)", self.queue_ms),
            ("provider call (attempt opened → emulator received)", self.call_ms),
        )
        split = "; ".join(
            f"{name} p50 {ms(percentile(v, 50))}, p99 {ms(percentile(v, 99))}" for name, v in parts
        )
        health = [f"   - Under this load: {self.health}"] if self.health else []
        return [
            line,
            *health,
            f"   - Where the time goes, from the jobs' records in the SQLite file: {split}. "
            f"Each run takes {self.latency:g} s at the emulator, so about "
            f"{self.rate * self.latency:,.0f} jobs are being polled meanwhile.",
        ]


async def _paced(url: str, result: Latency, pool_size: int) -> None:
    pool = Pool(url, AUTH, size=pool_size)
    await send_paced(pool, result)
    pool.close()


async def send_paced(pool: Pool | Spread, result: Latency) -> None:
    """``result.rate`` submits a second for ``result.seconds``, open-loop; each job's send
    time in ``result.sent``."""
    body = json.dumps(FAL_JOB).encode()
    count = max(1, round(result.rate * result.seconds))
    tasks: list[asyncio.Task[None]] = []

    async def one() -> None:
        sent: list[float] = []
        try:
            status, data = await pool.post_json("/v1/jobs/images", body, on_send=sent)
        except (OSError, asyncio.IncompleteReadError, ValueError) as exc:
            result.failures.append(repr(exc))
            return
        if status != 202:
            result.failures.append(f"HTTP {status}: {data[:200]!r}")
            return
        result.sent[json.loads(data)["id"]] = sent[0]

    start = time.monotonic() + 0.05
    first = last = 0.0
    for i in range(count):
        at = start + i / result.rate
        delay = at - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        elif delay < -0.005:
            result.late_sends += 1
        last = time.monotonic()
        first = first or last
        tasks.append(asyncio.create_task(one()))
    result.send_span = max(last - first, 1 / result.rate)
    await asyncio.gather(*tasks)


async def warm_up(url: str, jobs: int) -> None:
    """A few submits one after another: connections, caches and code paths are warm."""
    pool = Pool(url, AUTH, size=1)
    body = json.dumps(FAL_JOB).encode()
    for _ in range(jobs):
        await pool.post_json("/v1/jobs/images", body)
        await asyncio.sleep(0.01)
    pool.close()


async def _drive(
    url: str, database_url: str, emulator: Emulator, result: Latency, timeout: float
) -> dict[str, float]:
    """Warm up, send the paced submits, and wait (at most ``timeout``) until each has
    reached the provider; when each did, by job id."""
    await warm_up(url, 20)
    async with job_counter(database_url) as count:
        await until_finished(count, timeout, "latency warm-up", 0.1)
    await _paced(url, result, pool_size=512)
    deadline = time.monotonic() + timeout
    while True:
        entries = await asyncio.to_thread(emulator.requests, "submit")
        received = {j: e["time"] for j, e in submits_by_job(entries).items()}
        if result.sent.keys() <= received.keys() or time.monotonic() > deadline:
            return received
        await asyncio.sleep(0.5)


def match_received(result: Latency, received: dict[str, float], database_url: str) -> None:
    """Each sent job's latency to the provider; on SQLite, split by the jobs' records."""
    sqlite = database_url.startswith("sqlite:///")
    times = sqlite_job_times(database_url) if sqlite else {}
    for job_id, sent in result.sent.items():
        at = received.get(job_id)
        if at is None:
            result.missing += 1
            continue
        result.total_ms.append((at - sent) * 1000)
        created, started = times.get(job_id, (math.nan, None))
        if started is not None and not math.isnan(created):
            result.before_ms.append((created - sent) * 1000)
            result.queue_ms.append((started - created) * 1000)
            result.call_ms.append((at - started) * 1000)


def bench_latency(
    workdir: Path, rate: float, seconds: float, latency: float, timeout: float
) -> Latency:
    """Target 5. ``timeout`` bounds each wait: for the warm-up jobs to finish, and for the
    measured jobs to reach the provider (those that have not are counted as infinite). The
    measured jobs are not waited for beyond that."""
    result = Latency(rate, seconds, latency, timeout)
    lane_limit = max(100, math.ceil(rate * (latency + 2) * 2))
    with fal_rig(workdir, latency, lane_limit) as (emulator, gw):
        database_url = f"sqlite:///{gw.workdir / 'backserv.db'}"
        received = asyncio.run(_drive(gw.url, database_url, emulator, result, timeout))
        say(f"  latency: matching {len(result.sent):,} jobs to the emulator's log")
        match_received(result, received, database_url)
        result.health = health_text(*sqlite_run_health(database_url))
    if not result.sent:
        raise BenchError(f"latency: no submit succeeded: {result.failures[:3]}")
    return result
