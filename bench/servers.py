"""The processes the harness runs: gateways (``backserv serve``) and the bare app, and what
it reads about them from ``/proc`` (memory and CPU time)."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx

from tests.server import Server, free_port, start_server

ROOT = Path(__file__).resolve().parent.parent
KEY = "benchkey"
AUTH = {"Authorization": f"Bearer {KEY}"}
# the submit body: the zero-latency sandbox model, a small image
JOB = {"model": "sandbox-image-fast", "prompt": "a lighthouse at dusk", "width": 64, "height": 64}
TERMINAL = ("COMPLETED", "FAILED", "CANCELLED")


class BenchError(RuntimeError):
    pass


def say(message: str) -> None:
    """Progress goes to stderr; RESULTS.md gets the figures."""
    print(message, file=sys.stderr, flush=True)


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
    log = (workdir / f"bare-{port}.log").open("ab")
    cmd = [sys.executable, "-m", "bench.bare_app", "--port", str(port)]
    cmd += ["--post-bytes", str(post_bytes), "--get-bytes", str(get_bytes)]
    process = subprocess.Popen(cmd, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT)
    bare = Bare(process, f"http://127.0.0.1:{port}")
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise BenchError(f"the bare app exited early, see {workdir}/bare-{port}.log")
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(f"{bare.url}/healthz", timeout=1).status_code == 200:
                return bare
        time.sleep(0.05)
    bare.stop()
    raise BenchError("the bare app did not start")


@contextlib.contextmanager
def bare_apps(workdir: Path, count: int, post_bytes: int, get_bytes: int) -> Iterator[list[Bare]]:
    apps: list[Bare] = []
    try:
        for _ in range(count):
            apps.append(start_bare(workdir, post_bytes, get_bytes))
        yield apps
    finally:
        for app in apps:
            app.stop()


#: the load generators are one key doing what many users would: the per-key limits are off
UNLIMITED = {
    "BACKSERV_RATE_LIMIT_PER_SECOND": "0",
    "BACKSERV_MAX_ACTIVE_JOBS_PER_KEY": "0",
    "BACKSERV_MAX_WAITERS_PER_KEY": "0",
    "BACKSERV_MAX_RUNNING_REQUESTS_PER_KEY": "0",
}


def gateway_env(**extra: str) -> dict[str, str]:
    env = {"BACKSERV_API_KEYS": KEY, "BACKSERV_LOG_LEVEL": "warning", **UNLIMITED}
    env.update(extra)
    return env


@contextlib.contextmanager
def gateways(workdir: Path, env: dict[str, str], count: int = 1) -> Iterator[list[Server]]:
    """``count`` gateway processes with one env (on PostgreSQL: replicas of one database),
    each in its own work directory (logs; its SQLite file when the env names none)."""
    servers: list[Server] = []
    try:
        for i in range(count):
            sub = workdir if count == 1 else workdir / f"replica-{i}"
            sub.mkdir(parents=True, exist_ok=True)
            servers.append(start_server(sub, env))
        yield servers
    finally:
        for server in servers:
            stop(server)


def stop(server: Server) -> None:
    """SIGTERM, and SIGKILL if it is not gone in 20 s (a gateway hands back what it runs,
    which an overloaded one may not manage in time: the harness has its figures by then)."""
    if server.process.poll() is not None:
        return
    try:
        server.stop(timeout=20)
    except subprocess.TimeoutExpired:
        say(f"the gateway on port {server.port} did not stop in 20 s; killing it")
        server.kill()


@contextlib.contextmanager
def gateway(workdir: Path, env: dict[str, str]) -> Iterator[Server]:
    with gateways(workdir, env, 1) as [server]:
        yield server


# -- /proc --------------------------------------------------------------------------------------


def memory_kb(pid: int) -> dict[str, int]:
    """``VmRSS`` (now) and ``VmHWM`` (the peak so far) of a live process, in KiB."""
    found: dict[str, int] = {}
    with contextlib.suppress(OSError):
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            name, _, value = line.partition(":")
            if name in ("VmRSS", "VmHWM"):
                found[name] = int(value.split()[0])
    return found


def cpu_seconds(pid: int) -> float:
    """User plus system CPU time a live process has used (``/proc/PID/stat``)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
