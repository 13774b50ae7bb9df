"""Driving a flood (``tests/scenarios/flood_client.py``) and timing the quiet key's polls;
shared by the flood scenario and the fairness benchmark (bench/fairness.py)."""

from __future__ import annotations

import subprocess
import time

import httpx


class FloodError(RuntimeError):
    pass


def poll_latencies(client: httpx.Client, job_id: str, count: int) -> list[float]:
    """``count`` sequential polls of a job; the seconds each one took."""
    out = []
    for _ in range(count):
        started = time.perf_counter()
        resp = client.get(f"/v1/jobs/{job_id}")
        out.append(time.perf_counter() - started)
        if resp.status_code != 200:
            raise FloodError(f"a poll failed: {resp.status_code} {resp.text[:200]}")
    return out


def command(flood: subprocess.Popen[str], line: str, answer: str) -> None:
    """Send the flood client one command (``on``, ``off``) and wait for its answer."""
    if flood.stdin is None or flood.stdout is None:
        raise FloodError("the flood client was started without pipes")
    flood.stdin.write(line + "\n")
    flood.stdin.flush()
    got = flood.stdout.readline().strip()
    if got != answer:
        raise FloodError(f"the flood client answered {got!r} to {line!r}")
