"""The benchmark harness (``python -m bench``, ``make bench``); writes bench/RESULTS.md.

Targets 1 and 2: the gateway (``backserv serve``: uvicorn, one worker, SQLite, auth on) against
the bare Starlette app in ``bench/bare_app.py`` on the same uvicorn settings, loaded by ``wrk``
with the same threads, connections and duration, alternating gateway/bare for several rounds.
Each figure is a ratio gateway/bare: the median of the rounds, with min and max.

Target 3: end to end, N jobs submitted over HTTP to ``sandbox-image-fast`` and run to
COMPLETED; jobs/s, against Celery (Redis broker, no-op task) in the same run.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime
import importlib.metadata
import json
import os
import platform
import re
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from tests.server import Server, free_port, start_server

ROOT = Path(__file__).resolve().parent.parent
KEY = "benchkey"
AUTH = {"Authorization": f"Bearer {KEY}"}
# the submit body: the zero-latency sandbox model, a small image
JOB = {"model": "sandbox-image-fast", "prompt": "a lighthouse at dusk", "width": 64, "height": 64}


class BenchError(RuntimeError):
    pass


# -- wrk ----------------------------------------------------------------------------------------


def find_wrk(install: bool = True) -> str | None:
    """``wrk`` on PATH; if missing and allowed, ``apt-get install -y wrk`` (Debian package)."""
    found = shutil.which("wrk")
    if found or not install or not shutil.which("apt-get"):
        return found
    sudo = [] if os.geteuid() == 0 else ["sudo", "-n"]
    if sudo and not shutil.which("sudo"):
        return None
    print("wrk is missing; installing it with apt-get", file=sys.stderr, flush=True)
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    with contextlib.suppress(subprocess.SubprocessError, OSError):
        subprocess.run([*sudo, "apt-get", "install", "-y", "-qq", "wrk"], env=env, check=True)
    return shutil.which("wrk")


@dataclass
class WrkResult:
    rps: float
    p50_ms: float
    p99_ms: float
    requests: int
    bad: int  # non-2xx/3xx answers plus socket errors


_UNITS_MS = {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60_000.0}


def _ms(text: str) -> float:
    m = re.fullmatch(r"([\d.]+)(us|ms|s|m)", text.strip())
    if not m:
        raise BenchError(f"cannot read a wrk latency: {text!r}")
    return float(m.group(1)) * _UNITS_MS[m.group(2)]


def parse_wrk(output: str) -> WrkResult:
    rps = re.search(r"Requests/sec:\s+([\d.]+)", output)
    total = re.search(r"(\d+) requests in", output)
    p50 = re.search(r"^\s+50%\s+(\S+)", output, re.M)
    p99 = re.search(r"^\s+99%\s+(\S+)", output, re.M)
    if not (rps and total and p50 and p99):
        raise BenchError(f"cannot read wrk's output:\n{output}")
    bad = sum(int(n) for n in re.findall(r"Non-2xx or 3xx responses: (\d+)", output))
    sock = re.search(
        r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", output
    )
    if sock:
        bad += sum(int(g) for g in sock.groups())
    return WrkResult(
        float(rps.group(1)), _ms(p50.group(1)), _ms(p99.group(1)), int(total.group(1)), bad
    )


def lua_post_script(path: Path, body: dict[str, object]) -> Path:
    def lua_str(s: str) -> str:
        return "[==[" + s + "]==]"

    path.write_text(
        'wrk.method = "POST"\n'
        f"wrk.body = {lua_str(json.dumps(body))}\n"
        'wrk.headers["Content-Type"] = "application/json"\n'
        f'wrk.headers["Authorization"] = {lua_str(AUTH["Authorization"])}\n'
    )
    return path


@dataclass
class Load:
    wrk: str
    threads: int
    connections: int
    duration: float

    def command(self, url: str, script: Path | None = None) -> list[str]:
        cmd = [self.wrk, f"-t{self.threads}", f"-c{self.connections}", f"-d{self.duration:g}s"]
        cmd += ["--latency", "-H", f"Authorization: {AUTH['Authorization']}"]
        if script is not None:
            cmd += ["-s", str(script)]
        return [*cmd, url]

    def run(self, url: str, script: Path | None = None) -> WrkResult:
        out = subprocess.run(
            self.command(url, script), capture_output=True, text=True, check=True, timeout=600
        )
        result = parse_wrk(out.stdout)
        if result.bad:
            raise BenchError(f"{result.bad} failed requests to {url}:\n{out.stdout}")
        return result


# -- the two servers ----------------------------------------------------------------------------


@dataclass
class Bare:
    process: subprocess.Popen[bytes]
    url: str

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
        self.process.wait(15)


def start_bare(workdir: Path, post_bytes: int, get_bytes: int) -> Bare:
    port = free_port()
    log = (workdir / "bare.log").open("ab")
    cmd = [sys.executable, "-m", "bench.bare_app", "--port", str(port)]
    cmd += ["--post-bytes", str(post_bytes), "--get-bytes", str(get_bytes)]
    process = subprocess.Popen(cmd, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT)
    bare = Bare(process, f"http://127.0.0.1:{port}")
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise BenchError(f"the bare app exited early, see {workdir / 'bare.log'}")
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(f"{bare.url}/healthz", timeout=1).status_code == 200:
                return bare
        time.sleep(0.05)
    bare.stop()
    raise BenchError("the bare app did not start")


def gateway_env(**extra: str) -> dict[str, str]:
    env = {"BACKSERV_API_KEYS": KEY, "BACKSERV_LOG_LEVEL": "warning"}
    env.update(extra)
    return env


@contextlib.contextmanager
def gateway(workdir: Path, env: dict[str, str]) -> Iterator[Server]:
    workdir.mkdir(parents=True, exist_ok=True)
    server = start_server(workdir, env)
    try:
        yield server
    finally:
        if server.process.poll() is None:
            server.stop()


# -- figures ------------------------------------------------------------------------------------


@dataclass
class Figure:
    name: str
    target: str
    ratios: list[float] = field(default_factory=list)
    a: list[WrkResult] = field(default_factory=list)  # the gateway, per round
    b: list[WrkResult] = field(default_factory=list)  # the bare app, per round
    threshold: float = 0.0

    @property
    def median(self) -> float:
        return statistics.median(self.ratios)

    @property
    def met(self) -> bool:
        return self.median >= self.threshold

    def summary(self) -> str:
        a = statistics.median(r.rps for r in self.a)
        b = statistics.median(r.rps for r in self.b)
        p99a = statistics.median(r.p99_ms for r in self.a)
        p99b = statistics.median(r.p99_ms for r in self.b)
        return (
            f"ratio **{self.median:.2f}x** (min {min(self.ratios):.2f}, max "
            f"{max(self.ratios):.2f}, {len(self.ratios)} rounds); median req/s gateway "
            f"{a:,.0f} vs bare {b:,.0f}; p99 {p99a:.1f} ms vs {p99b:.1f} ms"
        )


def alternate(
    fig: Figure, rounds: int, a: Callable[[], WrkResult], b: Callable[[], WrkResult]
) -> Figure:
    for i in range(rounds):
        ra, rb = a(), b()
        fig.a.append(ra)
        fig.b.append(rb)
        fig.ratios.append(ra.rps / rb.rps)
        print(
            f"  {fig.name} round {i + 1}/{rounds}: gateway {ra.rps:,.0f} req/s, "
            f"bare {rb.rps:,.0f} req/s, ratio {fig.ratios[-1]:.2f}",
            file=sys.stderr,
            flush=True,
        )
    return fig


def bench_http(
    workdir: Path, load: Load, rounds: int, profiles: list[str] | None = None
) -> list[Figure]:
    """Targets 1 and 2. The scheduler is held still (sandbox concurrency 0) so submitted jobs
    stay QUEUED: the figure is the submit path alone (auth, validation, durable insert)."""
    env = gateway_env(BACKSERV_PROVIDER_CONCURRENCY='{"sandbox": 0}')
    with gateway(workdir / "http", env) as gw:
        first = httpx.post(f"{gw.url}/v1/jobs/images", json=JOB, headers=AUTH, timeout=10)
        if first.status_code != 202:
            raise BenchError(f"submit answered {first.status_code}: {first.text}")
        job_id = first.json()["id"]
        got = httpx.get(f"{gw.url}/v1/jobs/{job_id}", headers=AUTH, timeout=10)
        if got.status_code != 200:
            raise BenchError(f"GET answered {got.status_code}: {got.text}")
        bare = start_bare(workdir, len(first.content), len(got.content))
        try:
            script = lua_post_script(workdir / "post.lua", JOB)
            path_post, path_get = "/v1/jobs/images", f"/v1/jobs/{job_id}"
            post = alternate(
                Figure("POST /v1/jobs/images", "≥ 0.8x the bare app", threshold=0.8),
                rounds,
                lambda: load.run(gw.url + path_post, script),
                lambda: load.run(bare.url + path_post, script),
            )
            get = alternate(
                Figure("GET /v1/jobs/{id}", "≥ 0.9x the bare app", threshold=0.9),
                rounds,
                lambda: load.run(gw.url + path_get),
                lambda: load.run(bare.url + path_get),
            )
        finally:
            bare.stop()
        if profiles is not None:
            print("profiling the submit and poll paths with py-spy", file=sys.stderr, flush=True)
            profiles.append("- Submit path (`POST /v1/jobs/images` under wrk):")
            profiles += profile(gw.pid, load, gw.url + path_post, script, workdir / "post.txt")
            profiles.append("- Poll path (`GET /v1/jobs/{id}` under wrk):")
            profiles += profile(gw.pid, load, gw.url + path_get, None, workdir / "get.txt")
    return [post, get]


# -- profiles -----------------------------------------------------------------------------------


def _frame_name(frame: str) -> str:
    """``create_image (gateway/api/jobs.py:140)`` -> ``create_image (gateway/api/jobs.py)``."""
    m = re.fullmatch(r"(.*) \((.*?)(?::\d+)?\)", frame.strip())
    if not m:
        return frame.strip()
    path = m.group(2)
    for marker in ("site-packages/", "/work/main/", str(ROOT) + "/"):
        if marker in path:
            path = path.split(marker, 1)[1]
    return f"{m.group(1)} ({path})"


def top_costs(raw: str, n: int = 8) -> tuple[int, list[tuple[str, int]], list[tuple[str, int]]]:
    """From py-spy's raw (collapsed) stacks: total samples, the top ``n`` frames by self time,
    and the top ``n`` project functions (gateway/, providers/) by inclusive time."""
    own: dict[str, int] = {}
    incl: dict[str, int] = {}
    total = 0
    for line in raw.splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        k = int(count)
        total += k
        frames = [_frame_name(f) for f in stack.split(";")]
        own[frames[-1]] = own.get(frames[-1], 0) + k
        for f in set(frames):
            if ("(gateway/" in f or "(providers/" in f) and "(gateway/cli.py)" not in f:
                incl[f] = incl.get(f, 0) + k
    by = sorted(own.items(), key=lambda kv: -kv[1])[:n]
    return total, by, sorted(incl.items(), key=lambda kv: -kv[1])[:n]


def profile(pid: int, load: Load, url: str, script: Path | None, out: Path) -> list[str]:
    """py-spy records the gateway while wrk loads ``url``; the top costs, as markdown lines."""
    spy = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    if not Path(spy).exists():
        return ["  - not profiled: py-spy is not installed"]
    cmd = [spy, "record", "--pid", str(pid), "--duration", f"{max(1, round(load.duration))}"]
    cmd += ["--rate", "200", "--format", "raw", "--output", str(out), "--nonblocking"]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    time.sleep(0.3)
    load.run(url, script)
    _, err = proc.communicate(timeout=60)
    if proc.returncode or not out.exists():
        return [f"  - not profiled: py-spy failed ({err.decode(errors='replace')[-300:]})"]
    total, own, incl = top_costs(out.read_text())
    if not total:
        return ["  - not profiled: py-spy recorded no samples"]
    lines = [
        f"  - {total:,} samples over all threads, idle excluded (`Runner.run` self time is the"
        " event loop's own native code, uvloop; `_connection_worker_thread` is aiosqlite's"
        " database thread). Top self time:"
    ]
    lines += [f"    - {100 * k / total:.1f}% `{f}`" for f, k in own]
    lines += ["  - Top project functions (gateway/, providers/), inclusive time:"]
    lines += [f"    - {100 * k / total:.1f}% `{f}`" for f, k in incl]
    return lines


# -- target 3: end to end -----------------------------------------------------------------------


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


def _counts(db: Path) -> dict[str, int]:
    with contextlib.closing(sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5)) as conn:
        rows = conn.execute("SELECT status, count(*) FROM jobs GROUP BY status").fetchall()
    return {str(status): int(n) for status, n in rows}


async def _submit_all(url: str, jobs: int, concurrency: int) -> list[str]:
    """Submit ``jobs`` jobs; the failed submits' reasons (a failure does not stop the run)."""
    failures: list[str] = []
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(base_url=url, headers=AUTH, limits=limits, timeout=60) as client:
        remaining = iter(range(jobs))

        async def worker() -> None:
            for _ in remaining:
                try:
                    r = await client.post("/v1/jobs/images", json=JOB)
                except httpx.TransportError as exc:
                    failures.append(repr(exc))
                    continue
                if r.status_code != 202:
                    failures.append(f"HTTP {r.status_code}: {r.text[:200]}")

        await asyncio.gather(*(worker() for _ in range(concurrency)))
    return failures


def bench_e2e(workdir: Path, jobs: int, concurrency: int, timeout: float) -> E2E:
    """Jobs are submitted over HTTP by ``concurrency`` clients; completion is read from the
    SQLite file (read-only), so waiting costs the gateway no HTTP polling."""
    with gateway(workdir / "e2e", gateway_env()) as gw:
        db = workdir / "e2e" / "backserv.db"
        start = time.perf_counter()
        failures = asyncio.run(_submit_all(gw.url, jobs, concurrency))
        submitted = time.perf_counter() - start
        deadline = time.monotonic() + timeout
        terminal = ("COMPLETED", "FAILED", "CANCELLED")
        while True:
            counts = _counts(db)
            if not any(n for s, n in counts.items() if s not in terminal):
                break
            if time.monotonic() > deadline:
                raise BenchError(f"e2e: not finished in {timeout:g} s: {counts}")
            time.sleep(0.02)
        if counts.get("FAILED") or counts.get("CANCELLED"):
            raise BenchError(f"e2e: jobs did not complete: {counts}")
        elapsed = time.perf_counter() - start
        why = failures[0] if failures else ""
        return E2E(counts.get("COMPLETED", 0), submitted, elapsed, len(failures), why)


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


# -- RESULTS.md ---------------------------------------------------------------------------------


def _version(dist: str) -> str:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return "not installed"


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
    wrk = subprocess.run(["wrk", "--version"], capture_output=True, text=True, check=False)
    versions = ", ".join(
        f"{d} {_version(d)}" for d in ("starlette", "uvicorn", "uvloop", "httptools", "celery")
    )
    return {
        "CPUs (nproc)": str(os.cpu_count()),
        "CPU model": cpu,
        "Memory": mem,
        "OS": f"{platform.system()} {platform.release()}",
        "Python": platform.python_version(),
        "wrk": (wrk.stdout or wrk.stderr).split("[")[0].strip() or "unknown",
        "Packages": versions,
    }


def write_results(path: Path, args: argparse.Namespace, load: Load, body: list[str]) -> None:
    info = machine()
    lines = [
        "# Benchmark results",
        "",
        f"Written by `python -m bench` on {datetime.datetime.now(datetime.UTC):%Y-%m-%d %H:%M} "
        "UTC. These machines are shared and noisy: figures are **ratios**, each the median of "
        "alternating runs (gateway, bare, gateway, bare, …) with min and max.",
        "",
        "## Machine",
        "",
        *(f"- {k}: {v}" for k, v in info.items()),
        "",
        "## Command",
        "",
        "`" + " ".join(["python -m bench", *args.argv]) + "`",
        "",
        f"wrk: `wrk -t{load.threads} -c{load.connections} -d{load.duration:g}s --latency` with "
        "`Authorization: Bearer …` (and, for POST, a Lua script sending the JSON body "
        f"`{json.dumps(JOB)}`), {args.rounds} rounds per figure.",
        "",
        *body,
    ]
    path.write_text("\n".join(lines).rstrip() + "\n")


SETUP = """## Setup

- **Gateway**: `backserv serve` (uvicorn, one worker, `loop="auto"`, `http="auto"`, no access
  log), SQLite (WAL) in a fresh temporary directory, auth on (`BACKSERV_API_KEYS=benchkey`),
  `BACKSERV_LOG_LEVEL=warning`. Every 202 is answered after the job is committed.
- **Targets 1 and 2** run with `BACKSERV_PROVIDER_CONCURRENCY='{{"sandbox": 0}}'`: the
  scheduler claims nothing, so the figure is the submit path alone (auth, validation, durable
  insert) and the jobs stay QUEUED; the GET reads one pre-created job.
- **Bare app** (`bench/bare_app.py`): Starlette on the same uvicorn options; POST parses the
  same JSON and answers 202 with a body of the gateway's size; GET answers 200 with a body of
  the gateway's size. No auth, no store: the physical limit of this stack.
- **Target 3**: a fresh gateway with default settings (sandbox concurrency 8); an async
  `httpx` client with {concurrency} connections submits {jobs:,} jobs to `sandbox-image-fast`
  (zero latency); the clock stops when all are COMPLETED (read from the SQLite file, no HTTP
  polling). Celery: a no-op task, Redis broker and result backend (127.0.0.1:6379, databases
  11 and 12, emptied first), prefork worker with nproc processes, tasks sent by one Python
  producer; the clock stops when all results are stored. Celery is pip-installed into the venv
  on demand (`celery[redis]`); it is not a project dependency.
"""


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.split("\n")[0])
    parser.add_argument("--smoke", action="store_true", help="seconds: 1 round, 1 s, 50 jobs")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--duration", type=float, default=5.0, help="seconds per wrk run")
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--jobs", type=int, default=20_000, help="target 3's job count")
    parser.add_argument("--e2e-concurrency", type=int, default=64)
    parser.add_argument("--no-e2e", action="store_true")
    parser.add_argument("--no-celery", action="store_true")
    parser.add_argument("--no-profile", action="store_true", help="skip the py-spy profiles")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "RESULTS.md")
    parser.add_argument("--no-install", action="store_true", help="never apt-get install wrk")
    args = parser.parse_args(argv)
    args.argv = list(sys.argv[1:] if argv is None else argv)
    if args.smoke:
        args.rounds, args.duration, args.jobs = 1, 1.0, 50
        args.connections, args.e2e_concurrency = 8, 8
        args.no_celery = args.no_profile = True

    wrk = find_wrk(install=not args.no_install)
    if wrk is None:
        print("wrk is not installed (apt-get install wrk)", file=sys.stderr)
        return 2
    load = Load(wrk, args.threads, args.connections, args.duration)
    started = time.perf_counter()
    body = [SETUP.format(concurrency=args.e2e_concurrency, jobs=args.jobs), "## Figures", ""]
    with tempfile.TemporaryDirectory(prefix="backserv-bench-") as tmp:
        workdir = Path(tmp)
        print("targets 1 and 2: gateway vs bare app under wrk", file=sys.stderr, flush=True)
        profiles: list[str] | None = None if args.no_profile else []
        figures = bench_http(workdir, load, args.rounds, profiles)
        for n, fig in enumerate(figures, 1):
            verdict = "**met**" if fig.met else "**not met**"
            body.append(f"{n}. `{fig.name}` throughput {fig.target}: {verdict}. {fig.summary()}.")
        if args.no_e2e:
            body.append("3. End to end vs Celery: not run (`--no-e2e`).")
        else:
            print(f"target 3: {args.jobs} jobs end to end", file=sys.stderr, flush=True)
            e2e = bench_e2e(workdir, args.jobs, args.e2e_concurrency, timeout=600)
            line = (
                f"3. End to end, {e2e.jobs:,} jobs submitted over HTTP and run to COMPLETED: "
                f"**{e2e.jobs_per_second:,.0f} jobs/s** ({e2e.total_seconds:.1f} s; submits "
                f"alone {e2e.submits_per_second:,.0f}/s). "
            )
            if e2e.lost:
                line += (
                    f"**{e2e.lost:,} of {args.jobs:,} submits failed** (first: "
                    f"`{e2e.lost_why[:160]}`); the figure counts the completed jobs only. "
                )
            cel = "not run (`--no-celery`)" if args.no_celery else None
            if cel is None:
                print("target 3: celery", file=sys.stderr, flush=True)
                c = bench_celery(workdir, args.jobs, timeout=600)
                if isinstance(c, str):
                    cel = c
                else:
                    ratio = e2e.jobs_per_second / c.jobs_per_second
                    verdict = "**met**" if ratio >= 3 else "**not met**"
                    cel = (
                        f"{c.jobs_per_second:,.0f} tasks/s ({c.total_seconds:.1f} s; sends "
                        f"alone {c.submits_per_second:,.0f}/s). Gateway/Celery "
                        f"**{ratio:.2f}x**, target ≥ 3x: {verdict}"
                    )
            body.append(line + f"Celery: {cel}.")
    body += ["", "## Profiles", ""]
    body += profiles or ["Not taken (`--no-profile`)."]
    body += [
        "",
        "## Not measured yet",
        "",
        "Targets 4 (10,000 jobs in flight against the fal emulator), 5 (submit → provider-submit"
        " latency), and 6 (PostgreSQL, 2 replicas) are not part of this harness yet.",
        "",
        f"The whole run took {time.perf_counter() - started:.0f} s.",
    ]
    write_results(args.out, args, load, body)
    print(f"wrote {args.out}", file=sys.stderr)
    return 0
