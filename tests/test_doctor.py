"""``backserv doctor`` (gateway/doctor.py): a good setup passes, each broken part is named."""

from __future__ import annotations

import asyncio
import io
from pathlib import Path

import pytest

from gateway.cli import main
from gateway.doctor import Doctor, redact
from gateway.store.sqlite import SQLiteJobStore
from tests.conftest import ROOT

SANDBOX_ONLY = """
[[models]]
id = "sandbox-image"
kind = "image"
[[models.routes]]
provider = "sandbox"
target = "image"
"""
HOSTED_ONLY = """
[[models]]
id = "hosted"
kind = "image"
[[models.routes]]
provider = "fal"
target = "fal-ai/flux/dev"
"""


@pytest.fixture(autouse=True)
def good_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A setup with nothing wrong: every test breaks one part of it."""
    monkeypatch.chdir(tmp_path)  # no stray .env file
    catalog = tmp_path / "catalog.toml"
    catalog.write_text(SANDBOX_ONLY)
    monkeypatch.setenv("BACKSERV_DATABASE_URL", f"sqlite:///{tmp_path / 'backserv.db'}")
    monkeypatch.setenv("BACKSERV_CATALOG_PATH", str(catalog))
    monkeypatch.setenv("BACKSERV_STORAGE_DIR", str(tmp_path / "files"))
    monkeypatch.setenv("BACKSERV_PUBLIC_URL", "https://gen.example.com")


def doctor(capsys: pytest.CaptureFixture[str]) -> tuple[int, dict[str, str]]:
    """Run ``backserv doctor``; return its exit code and each check's line (and fix) by name."""
    code = main(["doctor"])
    out = capsys.readouterr().out
    checks: dict[str, str] = {}
    name = ""
    for line in out.splitlines():
        if line.startswith("["):
            name = line.split(":", 1)[0].split(" ", 2)[2]
            checks[name] = line
        elif line.strip().startswith("->"):
            checks[name] += "\n" + line
    assert list(checks) == ["settings", "database", "catalog", "providers", "storage", "public URL"]
    return code, checks


def marks(checks: dict[str, str]) -> dict[str, str]:
    return {name: line.split()[1] for name, line in checks.items()}


def open_database(tmp_path: Path) -> None:
    async def go() -> None:
        store = SQLiteJobStore(tmp_path / "backserv.db")
        await store.open()
        await store.close()

    asyncio.run(go())


def test_a_good_setup_passes_every_check(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    open_database(tmp_path)
    (tmp_path / "files").mkdir()

    code, checks = doctor(capsys)

    assert code == 0
    assert set(marks(checks).values()) == {"✓"}, checks
    assert "0 queued, 0 processing" in checks["database"]
    assert "1 models" in checks["catalog"]


def test_missing_database_and_storage_are_to_be_created_not_created(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, checks = doctor(capsys)

    assert code == 0
    assert "does not exist yet" in checks["database"]
    assert "will be created" in checks["storage"]
    assert not (tmp_path / "backserv.db").exists()
    assert not (tmp_path / "files").exists()


def test_invalid_settings_fail_and_skip_the_rest(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("BACKSERV_DATABASE_URL", "mysql://localhost/backserv")
    monkeypatch.setenv("BACKSERV_PORT", "0")

    code, checks = doctor(capsys)

    assert code == 1
    assert marks(checks)["settings"] == "✗"
    assert "BACKSERV_DATABASE_URL" in checks["settings"] and "BACKSERV_PORT" in checks["settings"]
    assert "->" in checks["settings"]
    assert {marks(checks)[n] for n in list(checks)[1:]} == {"-"}


def test_a_broken_catalog_fails_naming_the_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    broken = tmp_path / "broken.toml"
    broken.write_text(SANDBOX_ONLY.replace('kind = "image"', 'kind = "painting"'))
    monkeypatch.setenv("BACKSERV_CATALOG_PATH", str(broken))

    code, checks = doctor(capsys)

    assert code == 1
    assert marks(checks)["catalog"] == "✗"
    assert str(broken) in checks["catalog"] and "BACKSERV_CATALOG_PATH" in checks["catalog"]
    assert marks(checks)["providers"] == "-"


def test_a_database_that_cannot_be_created_fails(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "a-file").write_text("")
    monkeypatch.setenv("BACKSERV_DATABASE_URL", f"sqlite:///{tmp_path / 'a-file' / 'x.db'}")

    code, checks = doctor(capsys)

    assert code == 1
    assert marks(checks)["database"] == "✗"
    assert "BACKSERV_DATABASE_URL" in checks["database"]


def test_an_unreachable_postgres_fails_without_showing_its_password(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("BACKSERV_DATABASE_URL", "postgresql://app:hunter2@127.0.0.1:1/backserv")

    code, checks = doctor(capsys)

    assert code == 1
    assert marks(checks)["database"] == "✗"
    assert "cannot be opened" in checks["database"]
    assert "hunter2" not in checks["database"] and "app:***@" in checks["database"]


def test_a_catalog_no_model_of_which_can_run_fails_naming_the_credential(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    hosted = tmp_path / "hosted.toml"
    hosted.write_text(HOSTED_ONLY)
    monkeypatch.setenv("BACKSERV_CATALOG_PATH", str(hosted))

    code, checks = doctor(capsys)

    assert code == 1
    assert marks(checks)["providers"] == "✗"
    assert "FAL_KEY" in checks["providers"] and "hosted" in checks["providers"]

    monkeypatch.setenv("FAL_KEY", "k-123")
    code, checks = doctor(capsys)
    assert code == 0
    assert marks(checks)["providers"] == "✓"


def test_routes_without_credentials_are_a_warning_when_other_models_run(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("BACKSERV_CATALOG_PATH", str(ROOT / "catalog.toml"))

    code, checks = doctor(capsys)

    assert code == 0
    assert marks(checks)["providers"] == "!"
    assert "FAL_KEY" in checks["providers"] and "REPLICATE_API_TOKEN" in checks["providers"]
    assert "->" in checks["providers"]


def test_a_storage_dir_that_is_a_file_fails(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "files").write_text("not a directory")

    code, checks = doctor(capsys)

    assert code == 1
    assert marks(checks)["storage"] == "✗"
    assert "BACKSERV_STORAGE_DIR" in checks["storage"]


@pytest.mark.parametrize(
    "url",
    ["ftp://gen.example.com", "gen.example.com", "http://0.0.0.0:4093", "https://x.com/?a=1"],
)
def test_an_unusable_public_url_fails(
    url: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("BACKSERV_PUBLIC_URL", url)

    code, checks = doctor(capsys)

    assert code == 1
    assert marks(checks)["public URL"] == "✗"
    assert "BACKSERV_PUBLIC_URL" in checks["public URL"]


def test_an_unset_public_url_is_a_warning(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("BACKSERV_PUBLIC_URL")

    code, checks = doctor(capsys)

    assert code == 0
    assert marks(checks)["public URL"] == "!"
    assert "http://localhost:4093" in checks["public URL"]


async def test_a_console_without_check_marks_gets_plain_ones() -> None:
    out = io.TextIOWrapper(io.BytesIO(), encoding="ascii")
    assert await Doctor(out).run() == 0
    out.seek(0)
    assert "[1/6] ok settings" in out.read()


def test_redact_hides_only_the_password() -> None:
    assert redact("postgresql://u:pw@db:5432/x") == "postgresql://u:***@db:5432/x"
    assert redact("postgresql://u@db/x") == "postgresql://u@db/x"
    assert redact("sqlite:///data/backserv.db") == "sqlite:///data/backserv.db"
