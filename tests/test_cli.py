"""The ``backserv`` command (gateway/cli.py): keys create|list|revoke, models, config errors."""

from __future__ import annotations

import asyncio
import re
from pathlib import Path

import pytest

from gateway.cli import main
from tests.api.support import assert_error, running
from tests.conftest import ROOT, make_settings

KEY = re.compile(r"\bbsk_[A-Za-z0-9_-]{20,}")
KEY_ID = re.compile(r"\bkey_[0-9a-f]{16}\b")


@pytest.fixture(autouse=True)
def cli_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The CLI reads its settings from the environment: point it at this test's database."""
    monkeypatch.chdir(tmp_path)  # no stray .env file
    monkeypatch.setenv("BACKSERV_DATABASE_URL", f"sqlite:///{tmp_path / 'backserv.db'}")
    monkeypatch.setenv("BACKSERV_CATALOG_PATH", str(ROOT / "catalog.toml"))
    monkeypatch.setenv("BACKSERV_STORAGE_DIR", str(tmp_path / "files"))


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def create_key(capsys: pytest.CaptureFixture[str], name: str = "ci") -> tuple[str, str]:
    code, out, _err = run(capsys, "keys", "create", "--name", name)
    assert code == 0, out
    [key] = KEY.findall(out)
    [key_id] = KEY_ID.findall(out)
    return key, key_id


async def test_created_key_authenticates_against_the_app(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    key, _key_id = await asyncio.to_thread(create_key, capsys)
    settings = make_settings(tmp_path, api_keys="")
    async with running(settings, start_scheduler=False) as (client, _gw):
        resp = await client.get("/v1/jobs", headers={"Authorization": f"Bearer {key}"})
        assert resp.status_code == 200, resp.text
    assert KEY.findall(capsys.readouterr().err) == []  # the CLI key counts: no first key made


def test_keys_list_shows_the_key_without_its_secret(capsys: pytest.CaptureFixture[str]) -> None:
    key, key_id = create_key(capsys, name="ci-runner")
    code, out, _err = run(capsys, "keys", "list")
    assert code == 0
    [line] = [line for line in out.splitlines() if key_id in line]
    assert "ci-runner" in line
    assert "active" in line
    assert key not in out
    assert key[8:] not in out  # not even the part after the displayed prefix


async def test_revoked_key_no_longer_authenticates(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    key, key_id = await asyncio.to_thread(create_key, capsys)
    code, out, _err = await asyncio.to_thread(run, capsys, "keys", "revoke", key_id)
    assert code == 0
    assert key_id in out
    code, out, _err = await asyncio.to_thread(run, capsys, "keys", "list")
    [line] = [line for line in out.splitlines() if key_id in line]
    assert "revoked" in line
    async with running(make_settings(tmp_path), start_scheduler=False) as (client, _gw):
        resp = await client.get("/v1/jobs", headers={"Authorization": f"Bearer {key}"})
        assert_error(resp, 401)


def test_revoking_an_unknown_key_fails(capsys: pytest.CaptureFixture[str]) -> None:
    code, _out, err = run(capsys, "keys", "revoke", "key_0000000000000000")
    assert code == 1
    assert "key_0000000000000000" in err


def test_models_lists_the_sandbox_models(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _err = run(capsys, "models")
    assert code == 0
    listed = {line.split()[0]: line.split()[1] for line in out.splitlines() if line.strip()}
    sandbox = {
        "sandbox-image": "image",
        "sandbox-image-fast": "image",
        "sandbox-video": "video",
        "sandbox-upscale": "upscale",
        "sandbox-face-swap": "face_swap",
    }
    assert sandbox.items() <= listed.items()


BROKEN_MODEL = """
[[models]]
id = "broken-model"
kind = "{kind}"
{extra}
[[models.routes]]
provider = "{provider}"
target = "image"
"""


@pytest.mark.parametrize(
    ("kind", "extra", "provider", "field"),
    [
        pytest.param("painting", "", "sandbox", "kind", id="unknown-kind"),
        pytest.param(
            "image",
            "limits = { max_colour = 3 }",
            "sandbox",
            "limits.max_colour",
            id="unknown-limit",
        ),
        pytest.param(
            "image", 'defaults = { width = "wide" }', "sandbox", "defaults.width", id="bad-default"
        ),
        pytest.param("image", "", "acme", "routes[0].provider", id="unknown-provider"),
        pytest.param("image", 'colour = "red"', "sandbox", "colour", id="unknown-field"),
    ],
)
def test_broken_catalog_exits_2_naming_file_model_and_field(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    kind: str,
    extra: str,
    provider: str,
    field: str,
) -> None:
    path = tmp_path / "broken.toml"
    path.write_text(BROKEN_MODEL.format(kind=kind, extra=extra, provider=provider))
    monkeypatch.setenv("BACKSERV_CATALOG_PATH", str(path))
    code, _out, err = run(capsys, "models")
    assert code == 2
    assert str(path) in err
    assert "broken-model" in err
    assert field in err


def test_invalid_setting_exits_2_naming_it(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("BACKSERV_DATABASE_URL", "mysql://localhost/backserv")
    code, _out, err = run(capsys, "models")
    assert code == 2
    assert "BACKSERV_DATABASE_URL" in err
