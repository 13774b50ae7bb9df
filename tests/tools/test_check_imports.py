"""tools/check_imports.py on small package trees written into tmp_path."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from tools.check_imports import load_config, main

ROOT = Path(__file__).resolve().parents[2]

CONFIG = """
[tool.backserv.imports]
packages = ["pkg"]
"""

FACES = """
[[tool.backserv.imports.contracts]]
name = "faces never touch the store"
modules = ["pkg.api"]
forbidden = ["pkg.store"]
"""


def tree(root: Path, files: dict[str, str], config: str = CONFIG) -> Path:
    (root / "pyproject.toml").write_text(textwrap.dedent(config))
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text).lstrip())
    for folder in {(root / name).parent for name in files}:
        init = folder / "__init__.py"
        if not init.exists():
            init.write_text("")
    return root


def run(root: Path, capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    code = main(["--root", str(root)])
    captured = capsys.readouterr()
    return code, captured.out + captured.err


def test_clean_tree_exits_0(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    root = tree(
        tmp_path,
        {
            "pkg/a.py": "from pkg import b\nfrom pkg.b import thing\n",
            "pkg/b.py": "import os\nthing = os.sep\n",
        },
        CONFIG + FACES,
    )
    code, out = run(root, capsys)
    assert code == 0, out
    assert "0 cycle(s), 0 contract violation(s)" in out


def test_cycle_closed_by_a_type_checking_import_is_reported(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    root = tree(
        tmp_path,
        {
            "pkg/a.py": "from pkg.b import B\n",
            "pkg/b.py": """
                from typing import TYPE_CHECKING

                if TYPE_CHECKING:
                    from pkg.a import A
                B = 1
            """,
        },
    )
    code, out = run(root, capsys)
    assert code == 1
    assert "pkg.a -> pkg.b -> pkg.a" in out
    assert "pkg/a.py:1: pkg.a -> pkg.b" in out
    assert "pkg/b.py:4: pkg.b -> pkg.a (under TYPE_CHECKING)" in out


def test_cycle_through_a_function_local_import_is_reported(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    root = tree(
        tmp_path,
        {
            # `from pkg import b` names the submodule pkg.b, not the package
            "pkg/a.py": """
                def later() -> None:
                    from pkg import b
            """,
            "pkg/b.py": "import pkg.c\n",
            "pkg/c.py": "import pkg.a as a\n",
        },
    )
    code, out = run(root, capsys)
    assert code == 1
    assert "pkg.a -> pkg.b -> pkg.c -> pkg.a" in out
    assert "pkg/a.py:2: pkg.a -> pkg.b (inside a function)" in out


def test_relative_imports_are_resolved(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    root = tree(
        tmp_path,
        {
            "pkg/sub/x.py": "from ..y import Y\n",
            "pkg/y.py": "from .sub import x\nY = 1\n",
        },
    )
    code, out = run(root, capsys)
    assert code == 1
    assert "pkg.sub.x -> pkg.y -> pkg.sub.x" in out
    assert "pkg/sub/x.py:1: pkg.sub.x -> pkg.y" in out


def test_a_package_importing_its_own_submodules_is_no_cycle(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # store/__init__ imports store.sqlite, which imports store.base: importing a submodule
    # is an edge to that submodule, not to the package that holds it
    root = tree(
        tmp_path,
        {
            "pkg/store/__init__.py": "from .sqlite import Store\n",
            "pkg/store/sqlite.py": "from pkg.store.base import Base\nStore = Base\n",
            "pkg/store/base.py": "Base = object\n",
        },
    )
    code, out = run(root, capsys)
    assert code == 0, out


def test_contract_violation_is_reported_with_file_and_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    root = tree(
        tmp_path,
        {
            "pkg/api/jobs.py": "import json\n\nfrom pkg.store.base import Store\n",
            "pkg/store/base.py": "Store = object\n",
            # a pattern covers the module and what is under it, not a longer name
            "pkg/api/files.py": "from pkg.storage import sign\n",
            "pkg/storage.py": "sign = str\n",
        },
        CONFIG + FACES,
    )
    code, out = run(root, capsys)
    assert code == 1
    assert "contract broken: faces never touch the store" in out
    assert "pkg/api/jobs.py:3: pkg.api.jobs -> pkg.store.base" in out
    assert "pkg.storage" not in out


def test_an_allowed_exception_is_not_reported(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = (
        CONFIG
        + FACES
        + 'allow = [{ import = "pkg.api.health -> pkg.store", reason = "it pings the db" }]\n'
    )
    root = tree(
        tmp_path,
        {
            "pkg/api/health.py": "from pkg.store.base import Store\n",
            "pkg/api/jobs.py": "from pkg.store import base\n",
            "pkg/store/base.py": "Store = object\n",
        },
        config,
    )
    code, out = run(root, capsys)
    assert code == 1
    assert "pkg.api.health" not in out
    assert "pkg/api/jobs.py:1: pkg.api.jobs -> pkg.store.base" in out


def test_an_exception_that_matches_nothing_is_reported_as_stale(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = CONFIG + FACES + 'allow = [{ import = "pkg.api.old -> pkg.store", reason = "r" }]\n'
    root = tree(tmp_path, {"pkg/api/jobs.py": "", "pkg/store/base.py": ""}, config)
    code, out = run(root, capsys)
    assert code == 1
    assert "stale exception in contract 'faces never touch the store': pkg.api.old" in out


def test_an_exception_without_a_reason_is_a_config_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = CONFIG + FACES + 'allow = [{ import = "pkg.api.jobs -> pkg.store" }]\n'
    root = tree(tmp_path, {"pkg/api/jobs.py": ""}, config)
    code, out = run(root, capsys)
    assert code == 2
    assert "contracts[0].allow[0].reason" in out


def test_the_repository_declares_its_contracts() -> None:
    config = load_config(ROOT / "pyproject.toml")
    assert config.packages == ("gateway", "providers")
    assert config.contracts


def test_runs_as_a_module(tmp_path: Path) -> None:
    root = tree(tmp_path, {"pkg/a.py": "from . import b\n", "pkg/b.py": "from . import a\n"})
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    done = subprocess.run(
        [sys.executable, "-m", "tools.check_imports", "--root", str(root)],
        capture_output=True,
        text=True,
        env=env,
        check=False,
    )
    assert done.returncode == 1
    assert "pkg.a -> pkg.b -> pkg.a" in done.stdout
