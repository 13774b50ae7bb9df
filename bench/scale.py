"""Target 4: 10,000 jobs in flight against the fal emulator with 5 s provider latency.

A gateway on SQLite whose fal lane allows every job at once (``bench/emulator.py``) is sent
``jobs`` submits as fast as ``concurrency`` keep-alive connections go (``bench/rawhttp.py``).
Until every job is finished the harness reads the job counts from the SQLite file (the peak
of QUEUED + PROCESSING is the gateway's peak in flight), and the probe (``bench/probe.py``)
samples ``/healthz`` (event-loop lag, measured from outside: the gateway exports no lag
metric), ``GET /v1/jobs/{id}`` of the jobs submitted so far, and the gateway's RSS. Then the
emulator's request log gives the status polls per job and the peak of requests running at
the provider at once (each accepted submit runs ``latency`` seconds there).

With 5 s latency, 10,000 jobs are at the provider at once only if they reach it within 5 s:
by Little's law the peak is the gateway's dispatch rate times the latency. Both peaks are
reported, so a shortfall shows which side limits it.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from bench.emulator import FAL_JOB, fal_rig, submits_by_job
from bench.probe import probing, write_ids
from bench.profiles import finish_recording, start_recording
from bench.rawhttp import Pool, Spread
from bench.servers import AUTH, BenchError, cpu_seconds, memory_kb, say
from bench.stats import ms, peak_overlap, percentile, verdict
from bench.store_reads import Counts, health_text, job_counter, sqlite_run_health, unfinished

LOG_LIMIT = 100_000  # the emulator keeps this many requests
RSS_LIMIT_MB, LAG_LIMIT_MS, GET_LIMIT_MS = 300, 50, 50


@dataclass
class Scale:
    jobs: int
    latency: float
    ids: list[str] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)
    submit_seconds: float = 0.0
    submit_ms: list[float] = field(default_factory=list)  # each answered submit's round trip
    total_seconds: float = 0.0
    counts: Counts = field(default_factory=dict)
    peak_gateway: int = 0  # QUEUED + PROCESSING, sampled
    peak_provider: int = 0
    rss_peak_mb: float = 0.0
    rss_end_mb: float = 0.0
    lag_ms: list[float] = field(default_factory=list)
    lag_at: list[float] = field(default_factory=list)  # when each lag sample was sent
    started_at: float = 0.0  # time.time() of the first submit
    get_ms: list[float] = field(default_factory=list)
    probe_errors: int = 0
    probe_error: str = ""
    polls: Counter[str] = field(default_factory=Counter)  # status polls per provider request
    done_requests: set[str] = field(default_factory=set)  # provider requests read to the end
    health: str = ""
    results: int = 0  # result GETs
    accepted: int = 0  # submits the emulator accepted
    log_truncated: bool = False
    cpu_gateway: float = 0.0
    cpu_emulator: float = 0.0
    limit: float = 0.0  # most seconds for the whole run, submits included
    profile: list[str] = field(default_factory=list)

    @property
    def completed(self) -> int:
        return self.counts.get("COMPLETED", 0)

    @property
    def finished(self) -> bool:
        return bool(self.counts) and not unfinished(self.counts)

    def lines(self) -> list[str]:
        all_done = self.completed == self.jobs and not self.failures and self.finished
        lag99, get99 = percentile(self.lag_ms, 99), percentile(self.get_ms, 99)
        read = [self.polls[r] for r in self.done_requests]
        polls = sum(read) / max(1, len(read))
        most = max(read, default=0)
        sent = len(self.ids) + len(self.failures)
        head = (
            f"4. Scale: {self.jobs:,} jobs to `bench-fal` (fal emulator, {self.latency:g} s "
            f"per run); {sent:,} submitted in {self.submit_seconds:.1f} s "
            f"({sent / self.submit_seconds:,.0f}/s; a submit's round trip p50 "
            f"{ms(percentile(self.submit_ms, 50))}, p99 {ms(percentile(self.submit_ms, 99))}); "
            + (
                f"all finished after {self.total_seconds:.1f} s."
                if self.finished and sent == self.jobs
                else f"**stopped unfinished after {self.total_seconds:.1f} s**, the time limit "
                f"of the run ({self.limit:g} s, submits included)."
            )
        )
        out = [head]
        done = f"{self.completed:,} of {self.jobs:,} COMPLETED"
        if self.failures:
            done += f"; {len(self.failures):,} submits failed (first: `{self.failures[0][:160]}`)"
        other = {s: n for s, n in self.counts.items() if s != "COMPLETED"}
        if other:
            done += f"; other statuses {other}"
        out.append(f"   - All complete: {verdict(all_done)} ({done}).")
        reached = self.peak_gateway >= self.jobs
        out.append(
            f"   - In flight at once: peak **{self.peak_gateway:,}** at the gateway (QUEUED + "
            f"PROCESSING, sampled every 0.25 s), **{self.peak_provider:,}** running at the "
            f"provider; all {self.jobs:,} at once at the gateway: {verdict(reached)}. At the "
            f"provider the peak is bounded by the dispatch rate times {self.latency:g} s."
        )
        out.append(
            f"   - Gateway RSS peak (`VmHWM`) < {RSS_LIMIT_MB} MB: "
            f"{verdict(self.rss_peak_mb < RSS_LIMIT_MB)}. **{self.rss_peak_mb:,.0f} MB** "
            f"({self.rss_end_mb:,.0f} MB when the last job finished)."
        )
        out.append(
            f"   - Event-loop lag p99 < {LAG_LIMIT_MS} ms: {verdict(lag99 < LAG_LIMIT_MS)}. "
            f"**{ms(lag99)}** (p50 {ms(percentile(self.lag_ms, 50))}, max "
            f"{ms(max(self.lag_ms, default=float('nan')))}{self._worst_at()}, "
            f"{len(self.lag_ms):,} samples). "
            "Measured from outside: the gateway exports no loop-lag metric, so this is the "
            "round trip of `GET /healthz` (no store, no auth) sent every 20 ms, open-loop; it "
            "is the lag plus a fraction of a millisecond of HTTP."
        )
        out.append(
            f"   - `GET /v1/jobs/{{id}}` p99 during the run < {GET_LIMIT_MS} ms: "
            f"{verdict(get99 < GET_LIMIT_MS)}. **{ms(get99)}** (p50 "
            f"{ms(percentile(self.get_ms, 50))}, {len(self.get_ms):,} GETs of the jobs "
            "submitted so far, every 20 ms, open-loop)."
            + (
                f" {self.probe_errors} probe requests failed (first: `{self.probe_error}`)."
                if self.probe_errors
                else ""
            )
        )
        trunc = " (the log overflowed: at least)" if self.log_truncated else ""
        figure = (
            f"**{polls:.1f}** on average, at most {most}, over the {len(read):,} provider "
            "requests whose result was read"
            if read
            else "**n/a**: no provider request was read to the end"
        )
        out.append(
            f"   - Provider status polls per job{trunc}: {figure} (of "
            f"{self.accepted:,} submits the emulator accepted; "
            f"{sum(self.polls.values()):,} status polls and {self.results:,} result GETs in "
            f"all). CPU time: gateway {self.cpu_gateway:.0f} s, emulator "
            f"{self.cpu_emulator:.0f} s."
        )
        if self.health:
            out.append(f"   - Under this load: {self.health}")
        return out

    def _worst_at(self) -> str:
        if not self.lag_ms or len(self.lag_at) != len(self.lag_ms):
            return ""
        worst = max(range(len(self.lag_ms)), key=self.lag_ms.__getitem__)
        return f" at +{self.lag_at[worst] - self.started_at:.0f} s from the first submit"


async def submit_all(pool: Pool | Spread, result: Scale, concurrency: int, deadline: float) -> None:
    """``result.jobs`` submits on ``concurrency`` workers, until ``deadline``."""
    body = json.dumps(FAL_JOB).encode()
    remaining = iter(range(result.jobs))

    async def worker() -> None:
        for _ in remaining:
            begun = time.perf_counter()
            try:
                status, data = await pool.post_json("/v1/jobs/images", body)
            except (OSError, asyncio.IncompleteReadError, ValueError) as exc:
                result.failures.append(repr(exc))
                continue
            result.submit_ms.append((time.perf_counter() - begun) * 1000)
            if status != 202:
                result.failures.append(f"HTTP {status}: {data[:200]!r}")
                continue
            result.ids.append(json.loads(data)["id"])

    workers = [asyncio.create_task(worker()) for _ in range(concurrency)]
    _, late = await asyncio.wait(workers, timeout=max(0.0, deadline - time.monotonic()))
    for task in late:  # the time limit: submits still unanswered are given up
        task.cancel()
    await asyncio.gather(*late, return_exceptions=True)


async def drive(
    urls: list[str], database_url: str, result: Scale, ids_path: Path, concurrency: int
) -> None:
    """Submit ``result.jobs`` (to the replicas in turn) and wait until all are finished or
    the run's time limit is up, sampling the peak of jobs in flight."""

    def note(counts: Counts) -> None:
        result.peak_gateway = max(result.peak_gateway, unfinished(counts))

    async with job_counter(database_url) as count:
        submitting = True

        async def sample() -> None:
            while submitting:
                note(await count())
                write_ids(ids_path, result.ids[-2000:])
                await asyncio.sleep(0.25)

        sampler = asyncio.create_task(sample())
        pool = Spread(urls, AUTH, size=concurrency)
        start = time.perf_counter()
        result.started_at = time.time()
        deadline = time.monotonic() + result.limit
        try:
            await submit_all(pool, result, concurrency, deadline)
        finally:
            result.submit_seconds = time.perf_counter() - start
            submitting = False
            await sampler
            pool.close()
        write_ids(ids_path, result.ids)
        while True:
            result.counts = await count()
            note(result.counts)
            if not unfinished(result.counts) or time.monotonic() > deadline:
                break
            await asyncio.sleep(0.25)
        result.total_seconds = time.perf_counter() - start


def bench_scale(
    workdir: Path,
    jobs: int,
    latency: float,
    concurrency: int,
    limit: float,
    profile_seconds: float = 0.0,
) -> Scale:
    """Target 4, stopped after ``limit`` seconds (submits included) if it is not over by
    then; with ``profile_seconds``, py-spy records the gateway for that long from the first
    submit (``Scale.profile``)."""
    result = Scale(jobs, latency, limit=limit)
    ids_path = workdir / "scale-ids.json"
    with fal_rig(workdir, latency, lane_limit=jobs) as (emulator, gw):
        write_ids(ids_path, [])
        database_url = f"sqlite:///{gw.workdir / 'backserv.db'}"
        with probing(gw.url, gw.pid, workdir, ids_path) as samples:
            spy = None
            if profile_seconds:
                spy = start_recording(gw.pid, profile_seconds, workdir / "scale-profile.txt")
            asyncio.run(drive([gw.url], database_url, result, ids_path, concurrency))
            mem = memory_kb(gw.pid)
            if profile_seconds:
                result.profile = finish_recording(spy, workdir / "scale-profile.txt")
        result.rss_peak_mb = mem.get("VmHWM", 0) / 1024
        result.rss_end_mb = mem.get("VmRSS", 0) / 1024
        result.cpu_gateway = cpu_seconds(gw.pid)
        result.cpu_emulator = cpu_seconds(emulator.process.pid)
        result.lag_ms, result.get_ms = samples["healthz_ms"], samples["get_ms"]
        result.lag_at = samples["healthz_at"]
        result.probe_errors = samples["error_count"]
        result.probe_error = (samples["errors"] or [""])[0][:160]
        say(f"  scale: reading the emulator's request log ({jobs:,} jobs)")
        entries = emulator.requests()
    if not entries:
        raise BenchError("scale: the emulator logged no request")
    result.log_truncated = len(entries) >= LOG_LIMIT
    submits = submits_by_job(entries)
    result.accepted = len(submits)
    result.peak_provider = peak_overlap([e["time"] for e in submits.values()], latency)
    result.polls = Counter(e["request_id"] for e in entries if e["route"] == "status")
    results = [e for e in entries if e["route"] == "result"]
    result.results = len(results)
    result.done_requests = {e["request_id"] for e in results if e["status"] == 200}
    result.health = health_text(*sqlite_run_health(database_url))
    return result
