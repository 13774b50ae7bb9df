"""The fal emulator (``python -m tests.emulators fal``) as a process of its own, and a gateway
pointed at it: the rig of targets 4 and 5.

The gateway gets a catalog of one model, ``bench-fal``, whose only route is fal (no fallback,
so every job goes to the emulator), a fal key, the emulator as its queue URL, loopback allowed
for fetching the outputs it mirrors, and a fal lane limit high enough for every job at once.
"""

from __future__ import annotations

import contextlib
import json
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from bench.servers import ROOT, BenchError, gateway, gateway_env
from tests.server import Server, free_port

MODEL = "bench-fal"
CATALOG = f"""
[[models]]
id = "{MODEL}"
kind = "image"
description = "The benchmark's fal route, served by the fal emulator."
[[models.routes]]
provider = "fal"
target = "fal-ai/flux/schnell"
options = {{ size = "image_size" }}
"""
FAL_JOB = {"model": MODEL, "prompt": "a lighthouse at dusk", "width": 64, "height": 64}
JOB_HEADER = "x-backserv-job-id"


@dataclass
class Emulator:
    process: subprocess.Popen[bytes]
    url: str

    def requests(self, route: str | None = None) -> list[dict[str, Any]]:
        """The emulator's request log (the last 100,000 requests it received)."""
        params = {"route": route} if route else {}
        resp = httpx.get(f"{self.url}/_emulator/requests", params=params, timeout=120)
        resp.raise_for_status()
        entries: list[dict[str, Any]] = resp.json()["requests"]
        return entries

    def cpu_pid(self) -> int:
        return self.process.pid

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
        try:
            self.process.wait(15)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(10)


@contextlib.contextmanager
def fal_emulator(workdir: Path, latency: float) -> Iterator[Emulator]:
    port = free_port()
    cmd = [sys.executable, "-m", "tests.emulators", "fal", "--port", str(port)]
    cmd += ["--latency", f"{latency:g}", "--backlog", "4096"]
    log = (workdir / f"fal-emulator-{port}.log").open("ab")
    emulator = Emulator(
        subprocess.Popen(cmd, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT),
        f"http://127.0.0.1:{port}",
    )
    try:
        deadline = time.monotonic() + 20
        while True:
            if emulator.process.poll() is not None:
                raise BenchError(f"the fal emulator exited early, see {log.name}")
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{emulator.url}/_emulator/health", timeout=1).is_success:
                    break
            if time.monotonic() > deadline:
                raise BenchError("the fal emulator did not start")
            time.sleep(0.05)
        yield emulator
    finally:
        emulator.stop()


def fal_env(workdir: Path, emulator: Emulator, lane_limit: int) -> dict[str, str]:
    catalog = workdir / "bench-catalog.toml"
    catalog.write_text(CATALOG)
    return gateway_env(
        FAL_KEY="bench-fal-key",
        BACKSERV_FAL_QUEUE_URL=emulator.url,
        BACKSERV_FETCH_ALLOW="127.0.0.1",  # the emulator serves the outputs on loopback
        BACKSERV_CATALOG_PATH=str(catalog),
        BACKSERV_PROVIDER_CONCURRENCY=json.dumps({"fal": lane_limit}),
    )


@contextlib.contextmanager
def fal_rig(workdir: Path, latency: float, lane_limit: int) -> Iterator[tuple[Emulator, Server]]:
    """The emulator with ``latency`` seconds per run, and a gateway on SQLite pointed at it."""
    workdir.mkdir(parents=True, exist_ok=True)
    with fal_emulator(workdir, latency) as emulator:
        env = fal_env(workdir, emulator, lane_limit)
        with gateway(workdir, env) as gw:
            yield emulator, gw


def submits_by_job(entries: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """The accepted submits of the request log, by the gateway's job id (the header fal
    submits carry)."""
    found: dict[str, dict[str, Any]] = {}
    for e in entries:
        job_id = (e.get("headers") or {}).get(JOB_HEADER)
        if e.get("route") == "submit" and job_id and e.get("status") == 200:
            found.setdefault(job_id, e)
    return found
