"""``wrk``: finding (or installing) it, running it, and reading its output.

One server is loaded by one ``wrk``; several servers (replicas) by one ``wrk`` each, started
together and splitting the threads and connections, their figures added up.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from bench.servers import AUTH, BenchError


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


def combine(results: list[WrkResult]) -> WrkResult:
    """Several servers loaded at once: throughputs add up; each percentile is the worst
    server's (wrk reports percentiles, not histograms, so they cannot be merged exactly)."""
    return WrkResult(
        sum(r.rps for r in results),
        max(r.p50_ms for r in results),
        max(r.p99_ms for r in results),
        sum(r.requests for r in results),
        sum(r.bad for r in results),
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

    def command(self, url: str, script: Path | None = None, share: int = 1) -> list[str]:
        """The command for one server of ``share`` loaded at once (threads and connections
        are split between them)."""
        threads = max(1, self.threads // share)
        connections = max(threads, self.connections // share)
        cmd = [self.wrk, f"-t{threads}", f"-c{connections}", f"-d{self.duration:g}s"]
        cmd += ["--latency", "-H", f"Authorization: {AUTH['Authorization']}"]
        if script is not None:
            cmd += ["-s", str(script)]
        return [*cmd, url]

    def run(self, url: str, script: Path | None = None) -> WrkResult:
        return self.run_many([url], script)

    def run_many(self, urls: list[str], script: Path | None = None) -> WrkResult:
        """Load every URL at once, one ``wrk`` each; the combined figure."""
        procs = [
            subprocess.Popen(
                self.command(url, script, share=len(urls)),
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
            for url in urls
        ]
        results = []
        for url, proc in zip(urls, procs, strict=True):
            out, err = proc.communicate(timeout=600)
            if proc.returncode:
                raise BenchError(f"wrk failed on {url}: {err[-500:]}")
            result = parse_wrk(out)
            if result.bad:
                raise BenchError(f"{result.bad} failed requests to {url}:\n{out}")
            results.append(result)
        return combine(results)
