"""bench/RESULTS.md: the machine, the command, how each target is set up, and the figures."""

from __future__ import annotations

import argparse
import contextlib
import datetime
import importlib.metadata
import json
import os
import platform
import subprocess
from pathlib import Path

from bench.servers import JOB
from bench.wrk import Load

#: the written part of RESULTS.md (causes, fixes, what is left), appended to every run
ANALYSIS = Path(__file__).resolve().parent / "analysis.md"


def _version(dist: str) -> str:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return "not installed"


def _tool_version(tool: str) -> str:
    try:
        out = subprocess.run([tool, "--version"], capture_output=True, text=True, check=False)
    except OSError:
        return ""
    return (out.stdout or out.stderr).strip()


def machine() -> dict[str, str]:
    cpu = platform.processor() or "unknown"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    mem = "unknown"
    with contextlib.suppress(OSError, ValueError, IndexError):
        kb = int(Path("/proc/meminfo").read_text().split("\n")[0].split()[1])
        mem = f"{kb / 1024 / 1024:.1f} GiB"
    dists = ("starlette", "uvicorn", "uvloop", "httptools", "asyncpg", "celery")
    return {
        "CPUs (nproc)": str(os.cpu_count()),
        "CPU model": cpu,
        "Memory": mem,
        "OS": f"{platform.system()} {platform.release()}",
        "Python": platform.python_version(),
        "wrk": _tool_version("wrk").split("[")[0].strip() or "unknown",
        "PostgreSQL client": _tool_version("psql") or "unknown",
        "Packages": ", ".join(f"{d} {_version(d)}" for d in dists),
    }


SETUP = """## Setup

- **Gateway**: `backserv serve` (uvicorn, one worker, `loop="auto"`, `http="auto"`, no access
  log), SQLite (WAL) in a fresh temporary directory, auth on (`BACKSERV_API_KEYS=benchkey`),
  `BACKSERV_LOG_LEVEL=warning`. Every 202 is answered after the job is committed.
- **Targets 1 and 2** run with `BACKSERV_PROVIDER_CONCURRENCY='{{"sandbox": 0}}'`: the
  scheduler claims nothing, so the figure is the submit path alone (auth, validation, durable
  insert) and the jobs stay QUEUED; the GET reads one pre-created job. Before the first
  round, one uncounted second of each load warms each side up.
- **Bare app** (`bench/bare_app.py`): Starlette on the same uvicorn options; POST parses the
  same JSON and answers 202 with a body of the gateway's size; GET answers 200 with a body of
  the gateway's size. No auth, no store: the physical limit of this stack.
- **Target 3**: a fresh gateway with default settings (sandbox concurrency 8); an async
  `httpx` client with {concurrency} connections submits {jobs:,} jobs to `sandbox-image-fast`
  (zero latency; the issue asks for 20,000, fewer keep the whole run under 15 minutes, and
  `--jobs` sets it); the clock stops when all are COMPLETED (read from the database, no HTTP
  polling). Celery: a no-op task, Redis broker and result backend (127.0.0.1:6379, databases
  11 and 12, emptied first), prefork worker with nproc processes, tasks sent by one Python
  producer; the clock stops when all results are stored. Celery is pip-installed into the venv
  on demand (`celery[redis]`); it is not a project dependency.
- **Targets 4 and 5** (`bench/scale.py`, `bench/latency.py`, rig in `bench/emulator.py`): the
  fal emulator (`python -m tests.emulators fal --latency L`) in its own process, and a gateway
  on SQLite whose catalog is one model, `bench-fal`, with one route (fal, no fallback), pointed
  at it (`BACKSERV_FAL_QUEUE_URL`, `FAL_KEY`, `BACKSERV_FETCH_ALLOW=127.0.0.1` so it can mirror
  the emulator's outputs) and whose fal lane limit (`BACKSERV_PROVIDER_CONCURRENCY`) lets
  every job run at once; everything else default (`BACKSERV_PROVIDER_POLL_SECONDS=2`). Load
  comes from `bench/rawhttp.py`, a bare asyncio HTTP/1.1 client (httpx costs about 1 ms of
  client CPU a request, which on 2 cores is taken from the gateway).
  - **4**: {scale_jobs:,} submits on {scale_concurrency} connections as fast as they go, runs
    of {scale_latency:g} s. A probe process (`bench/probe.py`) sends `GET /healthz` and
    `GET /v1/jobs/{{id}}` every 20 ms, open-loop, and reads the gateway's RSS; the harness
    reads job counts from the SQLite file every 0.25 s; after the run, the emulator's request
    log gives the status polls per provider request. The run is bounded ({scale_limit:g} s,
    submits included), so an overloaded gateway ends it unfinished rather than the whole bench
    running long.
  - **5**: {latency_rate:g} submits/s for {latency_seconds:g} s, open-loop, runs of
    {latency_run:g} s, after 20 warm-up jobs have finished; the harness waits at most
    {latency_wait:g} s after the last send for every job to reach the provider, and stops.
- **Target 6** (`bench/postgres.py`): targets 1 to 3 again with
  `BACKSERV_DATABASE_URL=postgresql://…` on a database created for each part and dropped
  after it, first with one gateway, then with two (same database, same secret key and storage
  directory; wrk and the end-to-end client split their connections between them, and targets 1
  and 2 compare them with two bare apps loaded the same way). wrk: {pg_rounds} rounds of
  {pg_duration:g} s; {pg_jobs:,} jobs end to end.
- **Target 8** (`bench/hosted.py`, rig in `bench/hosted_rig.py`): issue #16's figures in four
  columns, SQLite with one gateway and PostgreSQL with two replicas (a fresh database each
  run), each with provider webhooks (`BACKSERV_PROVIDER_WEBHOOKS=true`, the emulator's JWKS as
  `BACKSERV_FAL_WEBHOOK_JWKS_URL`, safety-net poll at its default; with two replicas each
  one's `BACKSERV_PUBLIC_URL` is the other's, so deliveries land on either replica) and with
  polling only. Every column runs twice on a fresh rig: the volume run ({hosted_jobs:,} jobs
  of {hosted_latency:g} s on {hosted_concurrency} connections spread over the replicas, at
  most {hosted_limit:g} s), and the paced run ({hosted_rate:g} submits/s for
  {hosted_seconds:g} s, open-loop). Loop lag is the gateways' own
  `backserv_event_loop_lag_seconds` histogram (the run's difference of two scrapes, read as
  the upper bound of the bucket holding the p99); gateway CPU is `/proc/PID/stat` over each
  run, replicas summed, over the jobs COMPLETED.
"""


def setup_text(args: argparse.Namespace) -> str:
    return SETUP.format(
        concurrency=args.e2e_concurrency,
        jobs=args.jobs,
        scale_jobs=args.scale_jobs,
        scale_concurrency=args.scale_concurrency,
        scale_latency=args.scale_latency,
        scale_limit=args.scale_limit,
        latency_rate=args.latency_rate,
        latency_seconds=args.latency_seconds,
        latency_run=args.latency_run,
        latency_wait=args.latency_wait,
        pg_rounds=args.pg_rounds,
        pg_duration=args.pg_duration,
        pg_jobs=args.pg_jobs,
        hosted_jobs=args.hosted.jobs,
        hosted_latency=args.hosted.latency,
        hosted_concurrency=args.hosted.concurrency,
        hosted_limit=args.hosted.limit,
        hosted_rate=args.hosted.rate,
        hosted_seconds=args.hosted.seconds,
    )


def write_results(path: Path, args: argparse.Namespace, load: Load, body: list[str]) -> None:
    lines = [
        "# Benchmark results",
        "",
        f"Written by `python -m bench` on {datetime.datetime.now(datetime.UTC):%Y-%m-%d %H:%M} "
        "UTC. These machines are shared and noisy: the throughput figures are **ratios**, each "
        "the median of alternating runs (gateway, bare, gateway, bare, …) with min and max.",
        "",
        "## Machine",
        "",
        *(f"- {k}: {v}" for k, v in machine().items()),
        "",
        "## Command",
        "",
        "`" + " ".join(["python -m bench", *args.argv]) + "`",
        "",
        f"wrk: `wrk -t{load.threads} -c{load.connections} -d{load.duration:g}s --latency` with "
        "`Authorization: Bearer …` (and, for POST, a Lua script sending the JSON body "
        f"`{json.dumps(JOB)}`), {args.rounds} rounds per figure.",
        "",
        setup_text(args),
        *body,
    ]
    if ANALYSIS.exists():  # the written part: causes, fixes made, what would remove the rest
        lines += ["", ANALYSIS.read_text().strip()]
    path.write_text("\n".join(lines).rstrip() + "\n")
