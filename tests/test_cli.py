"""The ``backserv`` command (gateway/cli.py, gateway/commands/): keys create|list|revoke,
jobs list|show|cancel, models, their tables and --json, --version, serve's logging, config
errors. ``backserv run`` is in tests/commands/test_run.py."""

from __future__ import annotations

import asyncio
import importlib.metadata
import json
import logging
import re
import signal
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from gateway.cli import main
from gateway.jobs import Job, Status
from gateway.observability.logs import UVICORN_LOGGERS, JsonFormatter
from gateway.store.sqlite import SQLiteJobStore
from tests.api.support import assert_error, running
from tests.conftest import ROOT, make_settings
from tests.store.test_contract import make_job

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


def test_keys_get_their_own_limits_on_create_and_update(
    capsys: pytest.CaptureFixture[str],
) -> None:
    code, out, _err = run(
        capsys, "keys", "create", "--name", "batch", "--rate", "0.5", "--max-active", "4"
    )
    assert code == 0, out
    [key_id] = KEY_ID.findall(out)
    code, out, _err = run(capsys, "keys", "list")
    [line] = [line for line in out.splitlines() if key_id in line]
    assert "rate_limit_per_second=0.5" in line and "max_active_jobs=4" in line

    code, out, _err = run(capsys, "keys", "update", key_id, "--rate", "default", "--burst", "9")
    assert code == 0, out
    assert "rate_limit_per_second" not in out and "rate_limit_burst=9" in out
    code, out, _err = run(capsys, "keys", "update", key_id, "--name", "renamed")
    assert code == 0 and "renamed" in out and "rate_limit_burst=9" in out


@pytest.mark.parametrize(
    ("argv", "word"),
    [
        (("keys", "create", "--burst", "0"), "rate_limit_burst"),
        (("keys", "create", "--max-active", "1.5"), "max_active_jobs"),
        (("keys", "create", "--name", ""), "name"),
        (("keys", "update", "key_0000000000000000", "--burst", "3"), "key_0000000000000000"),
    ],
)
def test_bad_key_changes_fail_naming_the_field(
    capsys: pytest.CaptureFixture[str], argv: tuple[str, ...], word: str
) -> None:
    code, out, err = run(capsys, *argv)
    assert code == 1, out
    assert word in err
    assert KEY.findall(out) == []


def test_a_limit_that_is_not_a_number_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        run(capsys, "keys", "create", "--rate", "fast")
    assert info.value.code == 2


def table_rows(out: str) -> tuple[str, list[str]]:
    """A table's header line and its rows (the rule under the header skipped)."""
    header, rule, *rows = out.splitlines()
    assert set(rule) == {"─"}, out
    return header, rows


def test_models_lists_the_sandbox_models(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _err = run(capsys, "models")
    assert code == 0
    header, rows = table_rows(out)
    assert header.split()[:2] == ["MODEL", "KIND"]
    listed = {row.split()[0]: row.split()[1] for row in rows}
    sandbox = {
        "sandbox-image": "image",
        "sandbox-image-fast": "image",
        "sandbox-video": "video",
        "sandbox-upscale": "upscale",
        "sandbox-face-swap": "face_swap",
    }
    assert sandbox.items() <= listed.items()


def test_table_columns_line_up_under_their_headers(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _err = run(capsys, "models")
    assert code == 0
    header, rows = table_rows(out)
    starts = [header.index(name) for name in ("KIND", "ROUTES")]
    for row in rows:  # each cell starts where its header does, after a blank
        for start in starts:
            assert row[start - 1] == " " and row[start] != " ", (header, row)


def test_models_json_lists_every_model_with_its_routes(
    capsys: pytest.CaptureFixture[str],
) -> None:
    code, out, _err = run(capsys, "models", "--json")
    assert code == 0
    models = {m["id"]: m for m in json.loads(out)}
    assert models["sandbox-video"]["kind"] == "video"
    assert models["flux-dev"]["routes"][0] == {"provider": "fal", "target": "fal-ai/flux/dev"}
    assert models["flux-dev"]["routes"][1]["provider"] == "replicate"


def test_keys_list_json_has_the_key_without_its_secret(
    capsys: pytest.CaptureFixture[str],
) -> None:
    key, key_id = create_key(capsys, name="scripted")
    run(capsys, "keys", "update", key_id, "--rate", "2")
    code, out, _err = run(capsys, "keys", "list", "--json")
    assert code == 0
    [shown] = json.loads(out)
    assert shown["id"] == key_id and shown["name"] == "scripted"
    assert shown["status"] == "active" and shown["scopes"] == []
    assert shown["limits"]["rate_limit_per_second"] == 2
    assert key not in out and key[8:] not in out


def test_keys_list_has_a_header(capsys: pytest.CaptureFixture[str]) -> None:
    _key, key_id = create_key(capsys)
    code, out, _err = run(capsys, "keys", "list")
    assert code == 0
    header, rows = table_rows(out)
    assert header.split() == ["ID", "PREFIX", "STATUS", "CREATED", "SCOPES", "LIMITS", "NAME"]
    assert [row.split()[0] for row in rows] == [key_id]


def test_version_names_the_installed_package(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        run(capsys, "--version")
    assert exc.value.code == 0
    out = capsys.readouterr().out
    assert out.strip() == f"backserv {importlib.metadata.version('backserv')}"


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


# -- jobs list | show | cancel ----------------------------------------------------------------


def seed(tmp_path: Path, *jobs: Job, cancel: int = 0) -> list[Job]:
    """Store ``jobs`` in the CLI's database (and cancel the first ``cancel`` of them)."""

    async def go() -> None:
        store = SQLiteJobStore(tmp_path / "backserv.db")
        await store.open()
        try:
            for job in jobs:
                await store.insert_job(job)
            for job in jobs[:cancel]:
                await store.cancel(job.id)
        finally:
            await store.close()

    asyncio.run(go())
    return list(jobs)


def stored_status(tmp_path: Path, job_id: str) -> Status:
    async def go() -> Status:
        store = SQLiteJobStore(tmp_path / "backserv.db")
        await store.open()
        try:
            job = await store.get_job(job_id)
            assert job is not None
            return job.status
        finally:
            await store.close()

    return asyncio.run(go())


def listed_ids(out: str) -> list[str]:
    return [line.split()[0] for line in out.splitlines() if line.startswith("job-")]


def test_jobs_list_shows_newest_first_across_owners(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    jobs = seed(tmp_path, make_job(owner="alice"), make_job(owner="bob", model="sandbox-video"))

    code, out, _err = run(capsys, "jobs", "list")

    assert code == 0
    assert listed_ids(out) == [jobs[1].id, jobs[0].id]
    [bob] = [line for line in out.splitlines() if jobs[1].id in line]
    assert "QUEUED" in bob and "sandbox-video" in bob and "bob" in bob


def test_jobs_list_filters_by_status_and_owner(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    jobs = seed(tmp_path, make_job(), make_job(), make_job(owner="bob"), cancel=1)

    code, out, _err = run(capsys, "jobs", "list", "--status", "cancelled")
    assert code == 0
    assert listed_ids(out) == [jobs[0].id]

    code, out, _err = run(capsys, "jobs", "list", "--owner", "bob")
    assert listed_ids(out) == [jobs[2].id]


def test_jobs_list_of_many_pages_shows_progress_and_stops_at_the_limit(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    jobs = seed(tmp_path, *(make_job() for _ in range(260)))

    code, out, err = run(capsys, "jobs", "list", "--limit", "250")

    assert code == 0
    assert listed_ids(out) == [j.id for j in reversed(jobs)][:250]
    assert "read 100 jobs" in err and "read 200 jobs" in err
    assert "more jobs follow" in err


def test_jobs_list_of_an_empty_database_says_so(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _err = run(capsys, "jobs", "list")
    assert code == 0
    assert "No jobs." in out


def test_jobs_list_json_is_the_stored_jobs_newest_first(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    jobs = seed(tmp_path, make_job(owner="alice"), make_job(owner="bob"), cancel=1)

    code, out, _err = run(capsys, "jobs", "list", "--json")

    assert code == 0
    listed = json.loads(out)
    assert [j["id"] for j in listed] == [jobs[1].id, jobs[0].id]
    assert [j["status"] for j in listed] == ["QUEUED", "CANCELLED"]
    assert listed[1]["owner"] == "alice" and listed[1]["retry_count"] == 0


def test_jobs_list_has_a_header(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    seed(tmp_path, make_job())
    code, out, _err = run(capsys, "jobs", "list")
    assert code == 0
    header, rows = table_rows(out)
    assert header.split()[:3] == ["ID", "STATUS", "CREATED"] and len(rows) == 1


def test_jobs_list_refuses_an_unknown_status(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        run(capsys, "jobs", "list", "--status", "DONE")
    assert exc.value.code == 2


def test_jobs_show_prints_the_job_as_json(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    [job] = seed(tmp_path, make_job(meta={"face": "jobs"}))

    code, out, _err = run(capsys, "jobs", "show", job.id)

    assert code == 0
    shown = json.loads(out)
    assert shown["id"] == job.id
    assert shown["status"] == "QUEUED"
    assert shown["input"] == job.input
    assert shown["meta"] == {"face": "jobs"}
    assert shown["attempts"] == [] and shown["retry_count"] == 0


def test_jobs_show_of_an_unknown_job_fails(capsys: pytest.CaptureFixture[str]) -> None:
    code, _out, err = run(capsys, "jobs", "show", "job-nope")
    assert code == 1
    assert "job-nope" in err


def test_jobs_cancel_cancels_a_queued_job_once(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    [job] = seed(tmp_path, make_job())

    code, out, _err = run(capsys, "jobs", "cancel", job.id)
    assert code == 0
    assert job.id in out
    assert stored_status(tmp_path, job.id) is Status.CANCELLED

    code, _out, err = run(capsys, "jobs", "cancel", job.id)
    assert code == 1
    assert "already CANCELLED" in err


def test_jobs_cancel_of_an_unknown_job_fails(capsys: pytest.CaptureFixture[str]) -> None:
    code, _out, err = run(capsys, "jobs", "cancel", "job-nope")
    assert code == 1
    assert "job-nope" in err


# -- serve ------------------------------------------------------------------------------------


@pytest.fixture
def restore_logging_and_signals() -> Iterator[None]:
    root = logging.getLogger()
    saved_root = (root.handlers[:], root.level)
    loggers = [logging.getLogger(name) for name in UVICORN_LOGGERS]
    saved = {lg.name: (lg.handlers[:], lg.propagate, lg.level) for lg in loggers}
    handlers = {sig: signal.getsignal(sig) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        yield
    finally:
        root.handlers[:] = saved_root[0]
        root.setLevel(saved_root[1])
        for name, (hs, propagate, level) in saved.items():
            logging.getLogger(name).handlers[:] = hs
            logging.getLogger(name).propagate = propagate
            logging.getLogger(name).setLevel(level)
        for sig, handler in handlers.items():
            signal.signal(sig, handler)


@pytest.mark.usefixtures("restore_logging_and_signals")
def test_serve_logs_json_at_the_set_level_through_uvicorn_too(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import uvicorn

    root = logging.getLogger()
    seen: list[tuple[Any, int, bool, bool]] = []

    def run_server(server: uvicorn.Server) -> None:  # what uvicorn would run under
        json_handler = any(isinstance(h.formatter, JsonFormatter) for h in root.handlers)
        propagate = logging.getLogger("uvicorn.error").propagate
        seen.append((server.config, root.level, json_handler, propagate))

    monkeypatch.setattr(uvicorn.Server, "run", run_server)
    monkeypatch.setenv("BACKSERV_LOG_LEVEL", "WARNING")
    level_before = root.level

    code, _out, _err = run(capsys, "serve", "--port", "4999")

    assert code == 0
    [(config, level, json_handler, propagate)] = seen
    assert config.log_config is None  # uvicorn installs no logging config of its own
    assert level == logging.WARNING
    assert json_handler and propagate
    # once serve returns, logging is as it was
    assert root.level == level_before
    assert not any(isinstance(h.formatter, JsonFormatter) for h in root.handlers)


@pytest.mark.usefixtures("restore_logging_and_signals")
def test_a_serve_that_cannot_start_leaves_logging_as_it_was(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("BACKSERV_SUBMIT_TASK_MODELS", '{"face_swap": "no-such-model"}')
    handlers = logging.getLogger().handlers[:]

    code, _out, err = run(capsys, "serve")

    assert code == 2
    assert "no-such-model" in err
    assert logging.getLogger().handlers == handlers


def test_the_listening_line_never_shows_a_database_password() -> None:
    from gateway.cli import without_password

    assert without_password("postgresql://app:s3cr@t@db:5432/jobs") == (
        "postgresql://app:***@db:5432/jobs"
    )
    assert without_password("postgresql://app@db/jobs") == "postgresql://app@db/jobs"
    assert without_password("sqlite:///data/backserv.db") == "sqlite:///data/backserv.db"


@pytest.mark.usefixtures("restore_logging_and_signals")
def test_serve_holds_each_keys_requests_past_its_share_at_the_edge(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import uvicorn

    from gateway.edge import EdgeConfig

    seen: list[Any] = []
    monkeypatch.setattr(uvicorn.Server, "run", lambda server: seen.append(server.config))
    monkeypatch.setenv("BACKSERV_MAX_RUNNING_REQUESTS_PER_KEY", "3")

    code, _out, _err = run(capsys, "serve", "--port", "4999")

    assert code == 0
    [config] = seen
    assert isinstance(config, EdgeConfig)
    assert config.edge_limits.running_per_key == 3
    assert config.key_shares.per_key == 3
