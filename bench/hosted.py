"""Target 8 (issue #16): the hosted path at volume, with provider webhooks and with polling
only, on SQLite (one gateway) and on PostgreSQL (two replicas), side by side.

Each cell of the table (``bench/hosted_rig.py`` builds its rig) runs twice, each time on a
fresh emulator, gateway(s) and database:

- **the volume run**: ``jobs`` submits of ``latency``-second runs at the fal emulator, as
  fast as ``concurrency`` connections go (spread over the replicas), until every job is
  finished or ``limit`` seconds are up (``bench/scale.py``'s driver: the peak of jobs in
  flight from the database every 0.25 s; the probe process samples ``GET /v1/jobs/{id}``
  and ``/healthz`` every 20 ms on the first replica). The event-loop lag is the gateways'
  own ``backserv_event_loop_lag_seconds`` histogram, scraped before the first submit and
  after the last job finished (the difference is this run's), read as the upper bound of
  the bucket holding its p99; the worse replica counts. RSS is each gateway's ``VmHWM``.
- **the paced run**: ``rate`` submits a second for ``seconds``, open-loop
  (``bench/latency.py``), after 20 warm-up jobs have finished; submit → provider-received is
  from the moment the harness wrote the submit to the moment the emulator logged the
  gateway's submit for that job (one machine, one clock).

Gateway CPU per hosted job is read from ``/proc/PID/stat`` (user + system, every replica
summed) over each run: from just before the first submit to the last job finished, over
the jobs that COMPLETED. The emulator, the load generator and the probe are processes of
their own. The verdict takes the worse of the two runs.
"""

from __future__ import annotations

import asyncio
import json
import math
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from bench.emulator import submits_by_job
from bench.hosted_rig import (
    DELIVERIES,
    LAG,
    Cell,
    Rig,
    bucket_percentile,
    counter,
    delta,
    histogram,
    hosted_rig,
    scrape,
)
from bench.latency import Latency, match_received, send_paced, warm_up
from bench.probe import probing, write_ids
from bench.profiles import finish_recording, start_recording
from bench.rawhttp import Spread
from bench.scale import Scale, drive
from bench.servers import AUTH, cpu_seconds, memory_kb, say
from bench.stats import peak_overlap
from bench.store_reads import job_counter, unfinished, until_finished


@dataclass
class Sizes:
    """How big target 8's runs are; ``size`` 1 is the issue's (10,000 jobs; 500/s for 6 s)."""

    jobs: int = 10_000
    latency: float = 5.0
    concurrency: int = 64
    limit: float = 180.0
    rate: float = 500.0
    seconds: float = 6.0
    wait: float = 30.0

    @classmethod
    def scaled(cls, size: float, **overrides: float) -> Sizes:
        base = cls()
        out = cls(
            jobs=max(10, round(base.jobs * size)),
            seconds=max(1.0, base.seconds * min(1.0, size * 10)),
        )
        for name, value in overrides.items():
            setattr(out, name, type(getattr(out, name))(value))
        return out


@dataclass
class CellRun:
    cell: Cell
    sizes: Sizes
    volume: Scale
    paced: Latency
    volume_cpu: float = 0.0  # gateway CPU seconds over the volume run, replicas summed
    paced_cpu: float = 0.0
    paced_done: int = 0  # paced jobs COMPLETED (waited for, at most ``wait`` s)
    lag_p99_s: float = math.nan  # the worse replica's, bucket bound
    lag_samples: int = 0
    lag_over: int = 0  # samples over LAG_OVER_S, replicas summed
    lag_mean_s: float = math.nan
    rss_mb: list[float] = field(default_factory=list)  # VmHWM per replica
    deliveries: list[float] = field(default_factory=list)  # verified, per replica
    rejected: float = 0.0
    profile: list[str] = field(default_factory=list)

    def cpu_ms(self) -> tuple[float, float]:
        """Gateway CPU milliseconds per COMPLETED job: the volume run's, the paced run's."""
        volume = (
            1000 * self.volume_cpu / self.volume.completed if self.volume.completed else math.inf
        )
        paced = 1000 * self.paced_cpu / self.paced_done if self.paced_done else math.inf
        return volume, paced


#: a lag sample over this is counted on its own (a bucket bound of the lag histogram)
LAG_OVER_S = 0.05


def lag_of(run: CellRun, before: list[str], after: list[str]) -> None:
    worst, samples, over, total = -1.0, 0.0, 0.0, 0.0
    for b, a in zip(before, after, strict=True):
        d = delta(histogram(b, LAG), histogram(a, LAG))
        if not d:
            continue
        worst = max(worst, bucket_percentile(d, 99))
        samples += d.get(math.inf, 0.0)
        over += d.get(math.inf, 0.0) - d.get(LAG_OVER_S, 0.0)
        total += _sum(a) - _sum(b)
    run.lag_p99_s = worst if worst >= 0 else math.nan
    run.lag_samples = int(samples)
    run.lag_over = int(over)
    run.lag_mean_s = total / samples if samples else math.nan


def _sum(text: str) -> float:
    for line in text.splitlines():
        if line.startswith(f"{LAG}_sum "):
            return float(line.split()[1])
    return 0.0


def volume_run(rig: Rig, run: CellRun, workdir: Path, profile_seconds: float) -> None:
    s, result = run.sizes, run.volume
    ids_path = workdir / "ids.json"
    write_ids(ids_path, [])
    before = [scrape(u) for u in rig.urls]
    cpu0 = sum(cpu_seconds(p) for p in rig.pids)
    with probing(rig.urls[0], rig.pids[0], workdir, ids_path) as samples:
        spy = None
        if profile_seconds:
            spy = start_recording(rig.pids[0], profile_seconds, workdir / "profile.txt")
        asyncio.run(drive(rig.urls, rig.database_url, result, ids_path, s.concurrency))
        run.volume_cpu = sum(cpu_seconds(p) for p in rig.pids) - cpu0
        if profile_seconds:
            run.profile = finish_recording(spy, workdir / "profile.txt")
    after = [scrape(u) for u in rig.urls]
    lag_of(run, before, after)
    run.rss_mb = [memory_kb(p).get("VmHWM", 0) / 1024 for p in rig.pids]
    run.deliveries = [counter(a, DELIVERIES, outcome="verified") for a in after]
    run.rejected = sum(counter(a, DELIVERIES, outcome="rejected") for a in after)
    result.get_ms, result.lag_ms = samples["get_ms"], samples["healthz_ms"]
    result.probe_errors = samples["error_count"]
    result.probe_error = (samples["errors"] or [""])[0][:160]
    entries = rig.emulator.requests()
    submits = submits_by_job(entries)
    result.accepted = len(submits)
    result.peak_provider = peak_overlap([e["time"] for e in submits.values()], s.latency)
    result.polls = Counter(e["request_id"] for e in entries if e["route"] == "status")
    results = [e for e in entries if e["route"] == "result"]
    result.results = len(results)
    result.done_requests = {e["request_id"] for e in submits.values()}
    result.log_truncated = len(entries) >= 100_000


async def _paced_drive(rig: Rig, run: CellRun) -> tuple[dict[str, float], float]:
    """Warm up, send, wait for every job to reach the provider and then to finish (each
    wait at most ``wait`` s); when each reached it, and the gateways' CPU over the sends."""
    s, result = run.sizes, run.paced
    for url in rig.urls:
        await warm_up(url, 20 // len(rig.urls))
    async with job_counter(rig.database_url) as count:
        await until_finished(count, s.wait, "hosted warm-up", 0.1)
        cpu0 = sum(cpu_seconds(p) for p in rig.pids)
        pool = Spread(rig.urls, AUTH, size=512)
        await send_paced(pool, result)
        deadline = time.monotonic() + s.wait
        while True:
            entries = await asyncio.to_thread(rig.emulator.requests, "submit")
            received = {j: e["time"] for j, e in submits_by_job(entries).items()}
            if result.sent.keys() <= received.keys() or time.monotonic() > deadline:
                break
            await asyncio.sleep(0.5)
        deadline = time.monotonic() + s.latency + s.wait
        counts = await count()
        while unfinished(counts) and time.monotonic() < deadline:
            await asyncio.sleep(0.1)
            counts = await count()
        cpu = sum(cpu_seconds(p) for p in rig.pids) - cpu0
        pool.close()
        run.paced_done = max(0, counts.get("COMPLETED", 0) - 20 // len(rig.urls) * len(rig.urls))
    return received, cpu


def paced_run(rig: Rig, run: CellRun) -> None:
    received, run.paced_cpu = asyncio.run(_paced_drive(rig, run))
    match_received(run.paced, received, rig.database_url)


def bench_cell(
    workdir: Path, cell: Cell, sizes: Sizes, admin_url: str, profile_seconds: float = 0.0
) -> CellRun:
    run = CellRun(
        cell,
        sizes,
        Scale(sizes.jobs, sizes.latency, limit=sizes.limit),
        Latency(sizes.rate, sizes.seconds, sizes.latency, sizes.wait),
    )
    say(f"target 8 ({cell.label}): {sizes.jobs:,} jobs of {sizes.latency:g} s")
    with hosted_rig(workdir / "volume", cell, sizes.latency, sizes.jobs, admin_url) as rig:
        volume_run(rig, run, workdir / "volume", profile_seconds)
    say(f"target 8 ({cell.label}): {sizes.rate:g} submits/s for {sizes.seconds:g} s")
    lanes = max(100, math.ceil(sizes.rate * (sizes.latency + 2) * 2))
    with hosted_rig(workdir / "paced", cell, sizes.latency, lanes, admin_url) as rig:
        paced_run(rig, run)
    return run


def dump(runs: list[CellRun], path: Path) -> None:
    """The figures as JSON too, for comparing runs by hand."""
    rows = []
    for r in runs:
        volume, paced = r.cpu_ms()
        rows.append(
            {
                "cell": r.cell.label,
                "cpu_ms_volume": volume,
                "cpu_ms_paced": paced,
                "lag_p99_s": r.lag_p99_s,
                "rss_mb": r.rss_mb,
                "deliveries": r.deliveries,
                "completed": r.volume.completed,
                "jobs": r.sizes.jobs,
            }
        )
    path.write_text(json.dumps(rows, indent=1, default=str))
