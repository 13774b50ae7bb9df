"""The benchmark harness must not rot: ``python -m bench --smoke`` runs in seconds and writes
figures. This asserts that the harness works, not any speed."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from bench.run import parse_wrk

ROOT = Path(__file__).resolve().parent.parent

WRK_OUTPUT = """Running 1s test @ http://127.0.0.1:1/v1/jobs/images
  2 threads and 8 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency     2.50ms    1.00ms  20.00ms   90.00%
  Latency Distribution
     50%    2.10ms
     75%    2.90ms
     90%    3.50ms
     99%    1.20s
  3000 requests in 1.00s, 1.20MB read
  Non-2xx or 3xx responses: 3
  Socket errors: connect 0, read 1, write 0, timeout 2
Requests/sec:   2990.50
Transfer/sec:      1.20MB
"""


def test_parse_wrk() -> None:
    result = parse_wrk(WRK_OUTPUT)
    assert result.rps == 2990.5
    assert result.requests == 3000
    assert result.p50_ms == pytest.approx(2.1)
    assert result.p99_ms == pytest.approx(1200.0)
    assert result.bad == 6


@pytest.mark.timeout(180)
def test_bench_smoke_run_writes_figures(tmp_path: Path) -> None:
    if shutil.which("wrk") is None:
        if os.environ.get("CI") == "true":
            pytest.fail("wrk is not installed; CI must install it (apt-get install -y wrk)")
        pytest.skip("wrk is not installed (apt-get install wrk)")
    out = tmp_path / "RESULTS.md"
    proc = subprocess.run(
        [sys.executable, "-m", "bench", "--smoke", "--no-install", "--out", str(out)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=170,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    text = out.read_text()
    assert "## Machine" in text and "CPUs (nproc)" in text
    for name in ("POST /v1/jobs/images", "GET /v1/jobs/{id}"):
        line = next(x for x in text.splitlines() if name in x)
        assert re.search(r"ratio \*\*\d+\.\d\dx\*\*", line), line
        assert "**met**" in line or "**not met**" in line
    assert re.search(r"\*\*[\d,]+ jobs/s\*\*", text), text
