"""py-spy profiles of a gateway under wrk: the top costs, as markdown lines for RESULTS.md."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

from bench.servers import ROOT
from bench.wrk import Load


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


def find_py_spy(install: bool = True) -> str | None:
    """py-spy on PATH or in this venv; if missing and allowed, pip-installed into the venv
    (like Celery, it is the harness's tool, not a project dependency)."""
    spy = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    if Path(spy).exists() or not install:
        return spy if Path(spy).exists() else None
    print("py-spy is missing; pip-installing it into this venv", file=sys.stderr, flush=True)
    pip = [sys.executable, "-m", "pip", "install", "--quiet", "--disable-pip-version-check"]
    subprocess.run([*pip, "py-spy"], check=False, timeout=300)
    return spy if Path(spy).exists() else None


def start_recording(pid: int, seconds: float, out: Path) -> subprocess.Popen[bytes] | None:
    """py-spy recording ``pid`` for ``seconds`` into ``out``; None without py-spy."""
    spy = find_py_spy()
    if spy is None:
        return None
    cmd = [spy, "record", "--pid", str(pid), "--duration", f"{max(1, round(seconds))}"]
    cmd += ["--rate", "200", "--format", "raw", "--output", str(out), "--nonblocking"]
    return subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def finish_recording(proc: subprocess.Popen[bytes] | None, out: Path) -> list[str]:
    """Wait for the recording; its top costs, as markdown lines."""
    if proc is None:
        return ["  - not profiled: py-spy is not installed"]
    _, err = proc.communicate(timeout=120)
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


def profile(pid: int, load: Load, url: str, script: Path | None, out: Path) -> list[str]:
    """py-spy records the gateway while wrk loads ``url``; the top costs, as markdown lines."""
    proc = start_recording(pid, load.duration, out)
    if proc is not None:
        time.sleep(0.3)
        load.run(url, script)
    return finish_recording(proc, out)
