"""What the Makefile installs: ``make run`` only what serving needs, ``make test`` (and lint,
bench) the development tools too, each install remembered by its stamp.

One real ``make install`` into a fresh virtualenv (pip's cache makes it a few seconds to a
few tens of seconds); the rest reads ``make -n`` (what make would run) against that venv.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.server import ROOT

DEV_TOOLS = ("pytest", "mypy", "ruff", "schemathesis", "playwright", "hypothesis", "respx")


def make(*args: str, venv: Path, local: bool = False, dry: bool = False) -> str:
    env = {k: v for k, v in os.environ.items() if not k.startswith("BACKSERV_")}
    if local:
        env["BACKSERV_LOCAL"] = "1"
    argv = ["make", "-C", str(ROOT), *(["-n"] if dry else []), *args]
    argv += [f"VENV={venv}", f"PYTHON={sys.executable}"]
    done = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


def pip_lines(plan: str) -> list[str]:
    return [line for line in plan.splitlines() if "pip install" in line]


@pytest.fixture(scope="module")
def run_venv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The venv ``make run`` builds (``make install`` is its install step)."""
    venv = tmp_path_factory.mktemp("install") / "venv"
    make("install", venv=venv)
    return venv


def test_the_run_venv_serves_but_has_no_dev_tools(run_venv: Path) -> None:
    python = run_venv / "bin" / "python"
    probe = (
        "import importlib.util, sys; "
        f"print(','.join(m for m in {DEV_TOOLS!r} if importlib.util.find_spec(m)))"
    )
    found = subprocess.run(
        [str(python), "-c", probe], capture_output=True, text=True, timeout=60, check=True
    )
    assert found.stdout.strip() == ""  # none of them importable
    # ... and what serving needs is there: the command, its app and its rich output
    app = subprocess.run(
        [str(python), "-c", "import gateway.app, gateway.cli, uvicorn, rich; print('ok')"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert app.stdout.strip() == "ok", app.stderr
    version = subprocess.run(
        [str(run_venv / "bin" / "backserv"), "--version"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert version.returncode == 0, version.stderr
    assert version.stdout.startswith("backserv ")


def test_a_second_make_run_installs_nothing(run_venv: Path) -> None:
    plan = make("run", venv=run_venv, dry=True)
    assert pip_lines(plan) == []
    assert "backserv serve" in plan


def test_make_test_lint_and_bench_add_the_dev_extra(run_venv: Path) -> None:
    for target in ("test", "lint", "bench"):
        [line] = pip_lines(make(target, venv=run_venv, dry=True))
        assert "'.[dev]'" in line, line


def test_backserv_local_adds_the_local_extra_to_both(tmp_path: Path) -> None:
    [run_line] = pip_lines(make("run", venv=tmp_path / "venv", local=True, dry=True))
    assert "'.[local]'" in run_line
    [test_line] = pip_lines(make("test", venv=tmp_path / "venv", local=True, dry=True))
    assert "'.[dev,local]'" in test_line


def test_a_fresh_make_run_installs_the_package_without_extras(tmp_path: Path) -> None:
    [line] = pip_lines(make("run", venv=tmp_path / "venv", dry=True))
    assert line.rstrip().endswith("-e '.'")
