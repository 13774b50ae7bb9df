"""The Back.Serv task face (gateway/api/backserv_tasks.py), pinned to seeds/backserv-api.md.

The document's curl examples are replayed verbatim against a real ``backserv serve``: only
the host:port is substituted (and, in ``key`` mode, the Authorization header added). The
status code is read through a ``.curlrc`` (``CURL_HOME``), so the command text stays as
written. The rest runs in-process.
"""

from __future__ import annotations

import asyncio
import io
import json
import os
import re
import subprocess
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from PIL import Image

from gateway.api.backserv_tasks import DEFAULT_TASK_MODELS
from gateway.app import create_app
from gateway.auth import hash_key, key_id_for
from gateway.catalog import parse_catalog
from gateway.errors import ConfigError
from gateway.settings import Settings
from providers.registry import KNOWN_PROVIDERS
from tests.api.support import data_url, download, open_image, png, running
from tests.conftest import AUTH_A, AUTH_B, KEY_A, ROOT, make_settings
from tests.server import Server, running_server

# -- the document's examples, verbatim ------------------------------------------------------

SEEDS = ROOT.parent / "shared" / "seeds"
DOC_ORIGIN = "http://localhost:4093"
SUBMIT_EXAMPLE = """\
curl -X POST http://localhost:4093/submit_task \\
     -H "Content-Type: application/json" \\
     -d '{
           "task_type": "image_creation",
           "task_params": {
             "prompt": "a beautiful sunset"
           },
           "user_id": "user123"
         }'
"""
QUERY_EXAMPLE = "curl http://localhost:4093/query_task/abc123\n"
CANCEL_EXAMPLE = "curl -X POST http://localhost:4093/cancel_task/abc123\n"
#: the plain-text copy of the document (backserv-api-plain.txt) lost the indentation
PLAIN_SUBMIT_EXAMPLE = """\
curl -X POST http://localhost:4093/submit_task \\
-H "Content-Type: application/json" \\
-d '{
"task_type": "image_creation",
"task_params": {
"prompt": "a beautiful sunset"
},
"user_id": "user123"
}'"""
DOC_TICKET = "abc123"

KEY = "bs-key-a"
OTHER_KEY = "bs-key-b"
TICKET = re.compile(r"^job-[0-9a-f]+$")
STATUS_WORDS = {"Queueing", "Processing", "Completed", "Failed", "Cancelled"}
TERMINAL_WORDS = {"Completed", "Failed", "Cancelled"}
TASK_FIELDS = {"status", "result_info", "error_info", "started_at", "completed_at"}


def test_the_embedded_examples_are_the_documents_own() -> None:
    doc = SEEDS / "backserv-api.md"
    plain = SEEDS / "backserv-api-plain.txt"
    if not (doc.exists() and plain.exists()):
        pytest.skip(f"the seed documents are not in {SEEDS}")
    blocks = re.findall(r"```bash\n(.*?)```", doc.read_text(), re.S)
    assert blocks == [SUBMIT_EXAMPLE, QUERY_EXAMPLE, CANCEL_EXAMPLE]
    text = plain.read_text()
    for example in (PLAIN_SUBMIT_EXAMPLE, QUERY_EXAMPLE.strip(), CANCEL_EXAMPLE.strip()):
        assert example in text


# -- a real server and curl -----------------------------------------------------------------


@pytest.fixture(scope="module")
def curl_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A ``.curlrc`` that makes curl quiet and print the status code after the body."""
    home = tmp_path_factory.mktemp("curl")
    (home / ".curlrc").write_text('silent\nshow-error\nwrite-out = "\\n%{http_code}"\n')
    return home


@pytest.fixture(scope="module")
def key_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    env = {"BACKSERV_API_KEYS": f"{KEY},{OTHER_KEY}", "BACKSERV_SANDBOX_LATENCY": "0.6"}
    with running_server(tmp_path_factory.mktemp("key-mode"), env) as server:
        yield server


@pytest.fixture(scope="module")
def open_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """``none`` mode, acting as the owner of KEY, so its tickets show in /v1/jobs with KEY."""
    env = {
        "BACKSERV_API_KEYS": KEY,
        "BACKSERV_SANDBOX_LATENCY": "0.6",
        "BACKSERV_SUBMIT_TASK_AUTH": "none",
        "BACKSERV_SUBMIT_TASK_OWNER": key_id_for(hash_key(KEY)),
    }
    with running_server(tmp_path_factory.mktemp("none-mode"), env) as server:
        yield server


def curl(
    example: str, server: Server, home: Path, *, key: str | None = None, ticket: str = DOC_TICKET
) -> tuple[int, dict[str, Any]]:
    """Run a documented curl command against ``server``; return its status and JSON body."""
    command = example.replace(DOC_ORIGIN, server.url).replace(DOC_TICKET, ticket)
    if key is not None:
        command = command.replace("curl ", f'curl -H "Authorization: Bearer {key}" ', 1)
    done = subprocess.run(
        ["bash", "-c", command],
        capture_output=True,
        text=True,
        timeout=30,
        env={**os.environ, "CURL_HOME": str(home)},
    )
    assert done.returncode == 0, done.stderr
    body, _, status = done.stdout.rpartition("\n")
    return int(status), json.loads(body)


def assert_doc_error(status: int, body: dict[str, Any], expected: int, word: str) -> str:
    """The document's error shape: exactly ``{"error", "message"}``; returns the message."""
    assert status == expected, body
    assert set(body) == {"error", "message"}, body
    assert body["error"] == word, body
    assert isinstance(body["message"], str) and body["message"], body
    return body["message"]


def assert_submitted(status: int, body: dict[str, Any], serv_name: str = "sandbox:image") -> str:
    assert status == 202, body
    assert set(body) == {"ticket_id", "serv_name", "status"}, body
    assert TICKET.match(body["ticket_id"]), body
    assert body["serv_name"] == serv_name
    assert body["status"] == "Queueing"
    ticket: str = body["ticket_id"]
    return ticket


def assert_task_shape(body: dict[str, Any]) -> None:
    assert set(body) == TASK_FIELDS, body
    assert body["status"] in STATUS_WORDS
    for name in ("started_at", "completed_at"):
        if body[name] is not None:
            assert datetime.fromisoformat(body[name]).utcoffset() == UTC.utcoffset(None), body


def follow_with_curl(
    server: Server, home: Path, ticket: str, key: str | None = None
) -> list[dict[str, Any]]:
    """Poll the task with the documented query command until it is terminal."""
    seen: list[dict[str, Any]] = []
    deadline = time.monotonic() + 20
    while not seen or seen[-1]["status"] not in TERMINAL_WORDS:
        assert time.monotonic() < deadline, seen[-1:]
        status, body = curl(QUERY_EXAMPLE, server, home, key=key, ticket=ticket)
        assert status == 200, body
        assert_task_shape(body)
        seen.append(body)
    return seen


def changes(seen: list[dict[str, Any]]) -> list[str]:
    words: list[str] = []
    for body in seen:
        if not words or words[-1] != body["status"]:
            words.append(body["status"])
    return words


def test_documented_examples_run_a_task_to_a_downloadable_png(
    key_server: Server, curl_home: Path
) -> None:
    ticket = assert_submitted(*curl(SUBMIT_EXAMPLE, key_server, curl_home, key=KEY))
    seen = follow_with_curl(key_server, curl_home, ticket, KEY)
    assert ["Queueing", *changes(seen)][-2:] == ["Processing", "Completed"]
    assert changes(seen)[0] in ("Queueing", "Processing")
    done = seen[-1]
    assert done["error_info"] is None
    assert done["started_at"] <= done["completed_at"]
    assert all(b["result_info"] is None for b in seen[:-1])
    image = httpx.get(done["result_info"], timeout=10)  # no key: the URL is signed
    assert image.status_code == 200
    assert image.headers["content-type"] == "image/png"
    assert Image.open(io.BytesIO(image.content)).size == (1024, 1024)

    # the same job through the Jobs API, with the same key only
    job = httpx.get(
        f"{key_server.url}/v1/jobs/{ticket}", headers={"Authorization": f"Bearer {KEY}"}
    )
    assert job.status_code == 200
    assert (job.json()["status"], job.json()["model"]) == ("COMPLETED", "sandbox-image")
    other = httpx.get(
        f"{key_server.url}/v1/jobs/{ticket}", headers={"Authorization": f"Bearer {OTHER_KEY}"}
    )
    assert other.status_code == 404
    status, body = curl(QUERY_EXAMPLE, key_server, curl_home, key=OTHER_KEY, ticket=ticket)
    assert_doc_error(status, body, 404, "Not Found")

    # cancelling a finished task is a bad request
    status, body = curl(CANCEL_EXAMPLE, key_server, curl_home, key=KEY, ticket=ticket)
    assert "already Completed" in assert_doc_error(status, body, 400, "Bad Request")


def test_documented_query_and_cancel_of_ticket_abc123_are_404(
    key_server: Server, curl_home: Path
) -> None:
    for example in (QUERY_EXAMPLE, CANCEL_EXAMPLE):
        status, body = curl(example, key_server, curl_home, key=KEY)
        assert "abc123" in assert_doc_error(status, body, 404, "Not Found")


def test_documented_cancel_stops_a_running_task(key_server: Server, curl_home: Path) -> None:
    ticket = assert_submitted(*curl(SUBMIT_EXAMPLE, key_server, curl_home, key=KEY))
    status, body = curl(CANCEL_EXAMPLE, key_server, curl_home, key=KEY, ticket=ticket)
    assert (status, body) == (
        200,
        {"status": "Cancelled", "message": "Task successfully cancelled"},
    )
    status, body = curl(QUERY_EXAMPLE, key_server, curl_home, key=KEY, ticket=ticket)
    assert status == 200
    assert_task_shape(body)
    assert body["status"] == "Cancelled"
    assert body["result_info"] is None and body["completed_at"] is not None
    status, body = curl(CANCEL_EXAMPLE, key_server, curl_home, key=KEY, ticket=ticket)
    assert "already Cancelled" in assert_doc_error(status, body, 400, "Bad Request")


def test_plain_text_example_submits_too(key_server: Server, curl_home: Path) -> None:
    assert_submitted(*curl(PLAIN_SUBMIT_EXAMPLE, key_server, curl_home, key=KEY))


def test_in_key_mode_the_examples_without_a_key_are_401(
    key_server: Server, curl_home: Path
) -> None:
    for example in (SUBMIT_EXAMPLE, QUERY_EXAMPLE, CANCEL_EXAMPLE):
        status, body = curl(example, key_server, curl_home)
        assert_doc_error(status, body, 401, "Unauthorized")
    status, body = curl(QUERY_EXAMPLE, key_server, curl_home, key="not-a-key")
    assert_doc_error(status, body, 401, "Unauthorized")


def test_in_none_mode_the_examples_run_exactly_as_written(
    open_server: Server, curl_home: Path
) -> None:
    for example in (QUERY_EXAMPLE, CANCEL_EXAMPLE):
        assert_doc_error(*curl(example, open_server, curl_home), 404, "Not Found")
    ticket = assert_submitted(*curl(SUBMIT_EXAMPLE, open_server, curl_home))
    seen = follow_with_curl(open_server, curl_home, ticket)
    assert seen[-1]["status"] == "Completed"
    assert httpx.get(seen[-1]["result_info"]).headers["content-type"] == "image/png"
    # every request acted as the configured owner: here, the owner of KEY
    job = httpx.get(
        f"{open_server.url}/v1/jobs/{ticket}", headers={"Authorization": f"Bearer {KEY}"}
    )
    assert job.json()["status"] == "COMPLETED"

    second = assert_submitted(*curl(PLAIN_SUBMIT_EXAMPLE, open_server, curl_home))
    status, body = curl(CANCEL_EXAMPLE, open_server, curl_home, ticket=second)
    assert (status, body["status"]) == (200, "Cancelled")


# -- in-process: each task type, errors, settings -------------------------------------------


async def submit(
    client: httpx.AsyncClient, body: dict[str, Any], headers: dict[str, str] = AUTH_A
) -> httpx.Response:
    return await client.post("/submit_task", json=body, headers=headers)


async def finished(client: httpx.AsyncClient, ticket: str) -> dict[str, Any]:
    deadline = time.monotonic() + 10
    while True:
        resp = await client.get(f"/query_task/{ticket}", headers=AUTH_A)
        assert resp.status_code == 200, resp.text
        body: dict[str, Any] = resp.json()
        assert_task_shape(body)
        if body["status"] in TERMINAL_WORDS:
            return body
        assert time.monotonic() < deadline, body
        await asyncio.sleep(0.02)


def doc_error(resp: httpx.Response, status: int, word: str) -> str:
    assert resp.headers["content-type"].startswith("application/json")
    return assert_doc_error(resp.status_code, resp.json(), status, word)


SMALL = data_url(png(32, 24))
TASKS = [
    (
        "image_creation",
        {"prompt": "a lighthouse", "negative_prompt": "fog", "width": 96, "height": 64},
        "sandbox:image",
        "image/png",
        (96, 64),
    ),
    (
        "image_upscale",
        {"image_url": SMALL, "scale_factor": 3},
        "sandbox:upscale",
        "image/png",
        (96, 72),
    ),
    (
        "face_swap",
        {"source_image": SMALL, "target_image": data_url(png(40, 40, (0, 90, 200)))},
        "sandbox:face_swap",
        "image/png",
        (40, 40),
    ),
    (
        "video_creation",
        {"prompt": "waves", "duration": 1, "fps": 2},
        "sandbox:video",
        "image/gif",
        None,
    ),
]


@pytest.mark.parametrize(("task_type", "params", "route", "ctype", "size"), TASKS)
async def test_each_task_type_runs_on_its_default_model(
    tmp_path: Path,
    task_type: str,
    params: dict[str, Any],
    route: str,
    ctype: str,
    size: tuple[int, int] | None,
) -> None:
    async with running(make_settings(tmp_path)) as (client, gw):
        resp = await submit(
            client, {"task_type": task_type, "task_params": params, "user_id": "u1"}
        )
        ticket = assert_submitted(resp.status_code, resp.json(), serv_name=route)
        body = await finished(client, ticket)
        assert body["status"] == "Completed", body
        result = await download(client, body["result_info"])
        assert result.status_code == 200
        assert result.headers["content-type"] == ctype
        if size is not None:
            assert open_image(result.content).size == size
        job = await gw.store.get_job(ticket)
        assert job is not None
        assert job.model == DEFAULT_TASK_MODELS[task_type]
        assert job.meta["user_id"] == "u1"


async def test_a_failed_task_reports_its_error(tmp_path: Path) -> None:
    broken = "data:image/png;base64,iVBORw0KGgpnYXJiYWdl"  # a PNG's signature, then garbage
    async with running(make_settings(tmp_path)) as (client, _gw):
        resp = await submit(
            client,
            {"task_type": "image_upscale", "task_params": {"image_url": broken}, "user_id": "u"},
        )
        body = await finished(client, resp.json()["ticket_id"])
    assert body["status"] == "Failed"
    assert isinstance(body["error_info"], str) and body["error_info"]
    assert body["result_info"] is None


async def test_a_queued_task_cancels_and_keeps_its_user_id(tmp_path: Path) -> None:
    settings = make_settings(tmp_path)
    async with running(settings, start_scheduler=False) as (client, gw):
        body = {"task_type": "image_creation", "task_params": {"prompt": "x"}, "user_id": "u 7"}
        ticket = (await submit(client, body)).json()["ticket_id"]
        query = (await client.get(f"/query_task/{ticket}", headers=AUTH_A)).json()
        assert query == dict.fromkeys(TASK_FIELDS) | {"status": "Queueing"}
        resp = await client.post(f"/cancel_task/{ticket}", headers=AUTH_A)
        assert resp.status_code == 200
        assert resp.json() == {"status": "Cancelled", "message": "Task successfully cancelled"}
        query = (await client.get(f"/query_task/{ticket}", headers=AUTH_A)).json()
        assert query["status"] == "Cancelled" and query["started_at"] is None
        job = await gw.store.get_job(ticket)
        assert job is not None and job.meta == {"user_id": "u 7"}
        jobs_view = await client.get(f"/v1/jobs/{ticket}", headers=AUTH_A)
        assert jobs_view.json()["status"] == "CANCELLED"
        # another key's client does not see it at all
        doc_error(await client.get(f"/query_task/{ticket}", headers=AUTH_B), 404, "Not Found")
        doc_error(await client.post(f"/cancel_task/{ticket}", headers=AUTH_B), 404, "Not Found")


async def test_user_id_is_a_filter_of_the_owners_jobs(tmp_path: Path) -> None:
    async with running(make_settings(tmp_path), start_scheduler=False) as (client, gw):
        tickets = {}
        for user in ("alice", "bob", "alice"):
            body = {"task_type": "image_creation", "task_params": {"prompt": "x"}, "user_id": user}
            tickets.setdefault(user, []).append((await submit(client, body)).json()["ticket_id"])
        owner = key_id_for(hash_key(KEY_A))
        jobs, more = await gw.service.list(
            owner, limit=10, after=None, status=None, model=None, meta={"user_id": "alice"}
        )
        assert [j.id for j in jobs] == tickets["alice"][::-1] and not more


async def test_an_idempotency_key_replays_the_ticket(tmp_path: Path) -> None:
    body = {"task_type": "image_creation", "task_params": {"prompt": "x"}, "user_id": "u"}
    headers = {**AUTH_A, "Idempotency-Key": "k-1"}
    async with running(make_settings(tmp_path), start_scheduler=False) as (client, _gw):
        first = await client.post("/submit_task", json=body, headers=headers)
        again = await client.post("/submit_task", json=body, headers=headers)
        assert first.json() == again.json()
        assert again.headers["Idempotent-Replayed"] == "true"
        changed = await client.post("/submit_task", json={**body, "user_id": "v"}, headers=headers)
        doc_error(changed, 422, "Unprocessable Entity")


BAD_BODIES: list[tuple[str, Any, str]] = [
    ("missing task_type", {"task_params": {"prompt": "x"}, "user_id": "u"}, "'task_type'"),
    ("unknown task_type", {"task_type": "song", "task_params": {}, "user_id": "u"}, "'song'"),
    ("task_type not text", {"task_type": 3, "task_params": {}, "user_id": "u"}, "'task_type'"),
    ("missing task_params", {"task_type": "face_swap", "user_id": "u"}, "'task_params'"),
    (
        "task_params not object",
        {"task_type": "face_swap", "task_params": [1], "user_id": "u"},
        "'task_params'",
    ),
    (
        "missing user_id",
        {"task_type": "image_creation", "task_params": {"prompt": "x"}},
        "'user_id'",
    ),
    (
        "blank user_id",
        {"task_type": "image_creation", "task_params": {"prompt": "x"}, "user_id": " "},
        "'user_id'",
    ),
    (
        "user_id not text",
        {"task_type": "image_creation", "task_params": {"prompt": "x"}, "user_id": 7},
        "'user_id'",
    ),
    (
        "unknown field",
        {
            "task_type": "image_creation",
            "task_params": {"prompt": "x"},
            "user_id": "u",
            "model": "m",
        },
        "'model'",
    ),
    (
        "unknown param",
        {
            "task_type": "image_creation",
            "task_params": {"prompt": "x", "style": "y"},
            "user_id": "u",
        },
        "'task_params.style'",
    ),
    (
        "missing prompt",
        {"task_type": "video_creation", "task_params": {"fps": 8}, "user_id": "u"},
        "'task_params.prompt'",
    ),
    (
        "width as text",
        {
            "task_type": "image_creation",
            "task_params": {"prompt": "x", "width": "512"},
            "user_id": "u",
        },
        "'task_params.width'",
    ),
    (
        "scale_factor too big",
        {
            "task_type": "image_upscale",
            "task_params": {"image_url": SMALL, "scale_factor": 9},
            "user_id": "u",
        },
        "'task_params.scale_factor'",
    ),
    (
        "not a URL",
        {
            "task_type": "face_swap",
            "task_params": {"source_image": "me.png", "target_image": SMALL},
            "user_id": "u",
        },
        "'task_params.source_image'",
    ),
    ("body not an object", ["image_creation"], "JSON object"),
]


@pytest.mark.parametrize(
    ("body", "named"), [b[1:] for b in BAD_BODIES], ids=[b[0] for b in BAD_BODIES]
)
async def test_a_bad_submission_is_400_naming_the_problem(
    idle_client: httpx.AsyncClient, body: Any, named: str
) -> None:
    resp = await idle_client.post("/submit_task", json=body, headers=AUTH_A)
    assert named in doc_error(resp, 400, "Bad Request")


async def test_transport_errors_have_the_documents_shape(tmp_path: Path) -> None:
    async with running(make_settings(tmp_path, max_body_bytes=1024), start_scheduler=False) as (
        client,
        _gw,
    ):
        json_type = {**AUTH_A, "Content-Type": "application/json"}
        for raw in (b"{not json", b"", b"  "):
            doc_error(
                await client.post("/submit_task", content=raw, headers=json_type),
                400,
                "Bad Request",
            )
        form = {**AUTH_A, "Content-Type": "application/x-www-form-urlencoded"}
        doc_error(
            await client.post("/submit_task", content=b"task_type=x", headers=form),
            415,
            "Unsupported Media Type",
        )
        big = {"task_type": "image_creation", "task_params": {"prompt": "x" * 2000}, "user_id": "u"}
        doc_error(await submit(client, big), 413, "Payload Too Large")
        unauthorized = await client.get("/query_task/abc123", headers={"Authorization": "Bearer x"})
        doc_error(unauthorized, 401, "Unauthorized")
        assert unauthorized.headers["WWW-Authenticate"] == "Bearer"
        wrong_method = await client.get("/submit_task", headers=AUTH_A)
        doc_error(wrong_method, 405, "Method Not Allowed")
        assert wrong_method.headers["Allow"] == "POST"
        doc_error(await client.delete("/query_task/abc123"), 405, "Method Not Allowed")


async def test_an_unexpected_failure_is_a_500_in_the_documents_shape(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def boom(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("the disk caught fire")

    async with running(make_settings(tmp_path), start_scheduler=False) as (client, gw):
        monkeypatch.setattr(gw.service, "get", boom)
        resp = await client.get("/query_task/job-1", headers=AUTH_A)
        message = doc_error(resp, 500, "Internal Server Error")
        assert "fire" not in message
        assert resp.headers["x-request-id"]


async def test_none_mode_needs_no_key_and_acts_as_the_configured_owner(tmp_path: Path) -> None:
    settings = make_settings(tmp_path, submit_task_auth="NONE", submit_task_owner="lab-net")
    assert settings.submit_task_auth == "none"
    body = {"task_type": "image_creation", "task_params": {"prompt": "x"}, "user_id": "u"}
    async with running(settings, start_scheduler=False) as (client, gw):
        for headers in ({}, {"Authorization": "Bearer not-a-key"}):
            resp = await client.post("/submit_task", json=body, headers=headers)
            ticket = assert_submitted(resp.status_code, resp.json())
            job = await gw.store.get_job(ticket)
            assert job is not None and job.owner == "lab-net"
        assert (await client.get(f"/query_task/{ticket}")).status_code == 200
        # the other faces still ask for a key
        assert (await client.get(f"/v1/jobs/{ticket}")).status_code == 401


async def test_a_configured_model_serves_its_task_type_and_the_others_keep_theirs(
    tmp_path: Path,
) -> None:
    settings = make_settings(tmp_path, submit_task_models={"image_creation": "sandbox-image-fast"})
    async with running(settings, start_scheduler=False) as (client, gw):
        for task_type, params, model in (
            ("image_creation", {"prompt": "x"}, "sandbox-image-fast"),
            ("video_creation", {"prompt": "x"}, "sandbox-video"),
        ):
            body = {"task_type": task_type, "task_params": params, "user_id": "u"}
            ticket = (await submit(client, body)).json()["ticket_id"]
            job = await gw.store.get_job(ticket)
            assert job is not None and job.model == model


async def test_a_catalog_without_the_defaults_serves_what_it_has(tmp_path: Path) -> None:
    sandbox = [{"provider": "sandbox", "target": "image"}]
    raw = {
        "models": [
            {"id": "my-video", "kind": "video", "routes": [{**sandbox[0], "target": "video"}]},
            {"id": "my-image", "kind": "image", "routes": sandbox},
        ]
    }
    catalog = parse_catalog(raw, KNOWN_PROVIDERS, source="test-catalog")
    async with running(make_settings(tmp_path), catalog=catalog, start_scheduler=False) as (
        client,
        gw,
    ):
        body = {"task_type": "image_creation", "task_params": {"prompt": "x"}, "user_id": "u"}
        ticket = (await submit(client, body)).json()["ticket_id"]
        job = await gw.store.get_job(ticket)
        assert job is not None and job.model == "my-image"
        body = {"task_type": "face_swap", "task_params": {}, "user_id": "u"}
        assert "not available" in doc_error(await submit(client, body), 400, "Bad Request")


@pytest.mark.parametrize(
    ("models", "named"),
    [
        ({"image_creation": "sandbox-video"}, "'sandbox-video' is of kind video"),
        ({"face_swap": "no-such-model"}, "'no-such-model'"),
        ({"image_generation": "sandbox-image"}, "unknown task type 'image_generation'"),
    ],
)
def test_start_up_refuses_a_bad_task_model(
    tmp_path: Path, models: dict[str, str], named: str
) -> None:
    with pytest.raises(ConfigError, match="BACKSERV_SUBMIT_TASK_MODELS") as info:
        create_app(make_settings(tmp_path, submit_task_models=models))
    assert named in info.value.message


def test_serve_refuses_a_bad_task_model_with_a_clear_message(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from gateway.cli import main

    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("BACKSERV_CATALOG_PATH", str(ROOT / "catalog.toml"))
    monkeypatch.setenv("BACKSERV_SUBMIT_TASK_MODELS", '{"face_swap": "sandbox-image"}')
    assert main(["serve"]) == 2
    err = capsys.readouterr().err
    assert "face_swap" in err and "'sandbox-image' is of kind image" in err


def test_an_unknown_auth_mode_is_refused() -> None:
    with pytest.raises(ValueError, match="submit_task_auth"):
        Settings(_env_file=None, submit_task_auth="open")  # type: ignore[arg-type]


async def test_jobs_api_lists_tickets_filtered_by_user_id(tmp_path: Path) -> None:
    async with running(make_settings(tmp_path), start_scheduler=False) as (client, _gw):
        for user in ("alice", "bob", "alice"):
            resp = await client.post(
                "/submit_task",
                json={
                    "task_type": "image_creation",
                    "task_params": {"prompt": "a beautiful sunset"},
                    "user_id": user,
                },
                headers=AUTH_A,
            )
            assert resp.status_code == 202, resp.text
        alice = (await client.get("/v1/jobs?user_id=alice", headers=AUTH_A)).json()["jobs"]
        everyone = (await client.get("/v1/jobs", headers=AUTH_A)).json()["jobs"]
    assert len(alice) == 2 and len(everyone) == 3
