"""A probe of a gateway under load, run as a process of its own so the harness's own work
cannot delay it:

- every ``--interval`` seconds it sends ``GET /healthz`` (no store, no auth: its round trip
  is the gateway's event-loop lag plus a fraction of a millisecond of HTTP) and
  ``GET /v1/jobs/{id}`` for the next id of ``--ids`` (a JSON list the harness rewrites; it is
  re-read when it changes). Sends are open-loop, on as many connections as needed, so a
  stalled answer delays no later sample;
- every 0.25 s it reads the gateway's ``VmRSS`` and ``VmHWM``.

It stops on SIGTERM and writes its samples to ``--out`` as JSON.

    python -m bench.probe --url http://127.0.0.1:4093 --pid 1234 --ids ids.json --out p.json
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from bench.rawhttp import Pool
from bench.servers import AUTH, ROOT, BenchError, memory_kb


class Samples:
    def __init__(self) -> None:
        self.healthz_ms: list[float] = []
        self.get_ms: list[float] = []
        self.sent_at: dict[str, list[float]] = {"healthz": [], "get": []}  # time.time()
        self.errors: list[str] = []
        self.rss_kb: list[tuple[float, int]] = []
        self.hwm_kb = 0

    def to_json(self) -> dict[str, Any]:
        return {
            "healthz_ms": self.healthz_ms,
            "get_ms": self.get_ms,
            "healthz_at": self.sent_at["healthz"],
            "get_at": self.sent_at["get"],
            "errors": self.errors[:20],
            "error_count": len(self.errors),
            "rss_kb": self.rss_kb,
            "hwm_kb": self.hwm_kb,
        }


class Probe:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.samples = Samples()
        self.ids: list[str] = []
        self._ids_mtime = 0.0
        self.health = Pool(args.url, size=64)
        self.jobs = Pool(args.url, AUTH, size=64)

    def _reload_ids(self) -> None:
        path = Path(self.args.ids) if self.args.ids else None
        if path is None:
            return
        with contextlib.suppress(OSError, ValueError):
            mtime = path.stat().st_mtime
            if mtime != self._ids_mtime:
                self.ids = [str(i) for i in json.loads(path.read_text())]
                self._ids_mtime = mtime

    def _memory(self) -> None:
        mem = memory_kb(self.args.pid)
        if "VmRSS" in mem:
            self.samples.rss_kb.append((time.time(), mem["VmRSS"]))
            self.samples.hwm_kb = max(self.samples.hwm_kb, mem.get("VmHWM", 0))

    async def run(self, stop: asyncio.Event) -> None:
        tasks: set[asyncio.Task[None]] = set()
        interval = self.args.interval
        next_at = time.monotonic()
        n = 0
        while not stop.is_set():
            if n % max(1, round(0.25 / interval)) == 0:
                self._reload_ids()
                self._memory()
            jobs = [(self.health, "/healthz", "healthz")]
            if self.ids:
                jobs.append((self.jobs, f"/v1/jobs/{self.ids[n % len(self.ids)]}", "get"))
            for pool, path, name in jobs:
                task = asyncio.create_task(self._sample(pool, path, name))
                tasks.add(task)
                task.add_done_callback(tasks.discard)
            n += 1
            next_at += interval
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), max(0.0, next_at - time.monotonic()))
        if tasks:
            await asyncio.wait(tasks, timeout=10)
        self._memory()

    async def _sample(self, pool: Pool, path: str, name: str) -> None:
        sent: list[float] = []
        try:
            status, body = await pool.request("GET", path, on_send=sent)
        except (OSError, asyncio.IncompleteReadError, ValueError) as exc:
            self.samples.errors.append(f"{path}: {exc!r}")
            return
        if status != 200:
            self.samples.errors.append(f"{path}: HTTP {status} {body[:100]!r}")
            return
        sink = self.samples.healthz_ms if name == "healthz" else self.samples.get_ms
        sink.append((time.time() - sent[0]) * 1000)
        self.samples.sent_at[name].append(sent[0])


async def _main(args: argparse.Namespace) -> Samples:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    probe = Probe(args)
    await probe.run(stop)
    return probe.samples


@contextlib.contextmanager
def probing(
    url: str, pid: int, workdir: Path, ids: Path | None = None, interval: float = 0.02
) -> Iterator[dict[str, Any]]:
    """Run the probe while the block runs; the dict is filled with its samples on exit."""
    out = workdir / f"probe-{pid}.json"
    cmd = [sys.executable, "-m", "bench.probe", "--url", url, "--pid", str(pid)]
    cmd += ["--interval", f"{interval:g}", "--out", str(out)]
    if ids is not None:
        cmd += ["--ids", str(ids)]
    log = (workdir / f"probe-{pid}.log").open("ab")
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT)
    found: dict[str, Any] = {}
    try:
        yield found
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)
    if not out.exists():
        raise BenchError(f"the probe wrote no samples, see {log.name}")
    found.update(json.loads(out.read_text()))


def write_ids(path: Path, ids: list[str]) -> None:
    """Give the probe job ids to GET (atomically: it may read the file at any time)."""
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(ids))
    os.replace(tmp, path)


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.probe")
    parser.add_argument("--url", required=True)
    parser.add_argument("--pid", type=int, required=True, help="the gateway's process id")
    parser.add_argument("--ids", default="", help="a JSON file listing job ids to GET")
    parser.add_argument("--interval", type=float, default=0.02)
    parser.add_argument("--out", required=True)
    args = parser.parse_args()
    try:
        import uvloop
    except ImportError:
        samples = asyncio.run(_main(args))
    else:
        samples = uvloop.run(_main(args))
    tmp = Path(args.out + ".tmp")
    tmp.write_text(json.dumps(samples.to_json()))
    os.replace(tmp, args.out)


if __name__ == "__main__":
    main()
