"""Log lines (gateway/observability/logs.py): JSON or text, with the request id and the job id."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from pydantic import ValidationError
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.routing import Route

from gateway.api.request_id import RequestIdMiddleware
from gateway.catalog import parse_catalog
from gateway.observability.logs import UVICORN_LOGGERS, configure_logging
from gateway.observability.redact import LOGGERS as URL_LOGGERS
from gateway.observability.redact import RedactUrlArgs
from gateway.scheduler.loop import Scheduler
from gateway.scheduler.retry import RetryPolicy
from gateway.scheduler.runner import JobRunner
from gateway.service import JobRequest, JobService
from gateway.settings import Settings
from gateway.storage import LocalStorage, OutputSource
from gateway.store.sqlite import SQLiteJobStore
from providers.base import ProviderRef, RouteSpec
from tests.fakes import FakeProvider

log = logging.getLogger("backserv.test")


@pytest.fixture
def stream() -> Iterator[io.StringIO]:
    """Where configure_logging writes in a test; the logging setup is restored afterwards."""
    root = logging.getLogger()
    saved = (root.handlers[:], root.level)
    loggers = [logging.getLogger(name) for name in UVICORN_LOGGERS]
    uvicorn = {lg.name: (lg.handlers[:], lg.propagate, lg.level) for lg in loggers}
    filters = {name: logging.getLogger(name).filters[:] for name in URL_LOGGERS}
    out = io.StringIO()
    try:
        yield out
    finally:
        for name, saved_filters in filters.items():
            logging.getLogger(name).filters[:] = saved_filters
        root.handlers[:] = saved[0]
        root.setLevel(saved[1])
        for name, (handlers, propagate, level) in uvicorn.items():
            logging.getLogger(name).handlers[:] = handlers
            logging.getLogger(name).propagate = propagate
            logging.getLogger(name).setLevel(level)


def lines(stream: io.StringIO) -> list[dict[str, Any]]:
    return [json.loads(line) for line in stream.getvalue().splitlines()]


def test_a_json_line_holds_time_level_logger_message_and_ids(stream: io.StringIO) -> None:
    configure_logging("info", "json", stream)

    log.info("job %s started", "job-1", extra={"job_id": "job-1", "route": "sandbox:image"})

    [line] = lines(stream)
    assert line["ts"].endswith("Z") and "T" in line["ts"]
    assert line["level"] == "INFO"
    assert line["logger"] == "backserv.test"
    assert line["message"] == "job job-1 started"
    assert line["request_id"] is None
    assert line["job_id"] == "job-1"
    assert line["route"] == "sandbox:image"  # other extra fields come along


def test_a_logged_exception_is_in_the_same_line(stream: io.StringIO) -> None:
    configure_logging("info", "json", stream)
    try:
        raise ValueError("bad value")
    except ValueError:
        log.exception("it broke")

    [line] = lines(stream)
    assert line["message"] == "it broke"
    assert "Traceback" in line["exception"]
    assert "ValueError: bad value" in line["exception"]


def test_lines_below_the_level_are_dropped(stream: io.StringIO) -> None:
    configure_logging("WARNING", "json", stream)
    log.info("quiet")
    log.warning("loud")
    assert [line["message"] for line in lines(stream)] == ["loud"]


def test_uvicorn_lines_use_the_same_handler(stream: io.StringIO) -> None:
    logging.getLogger("uvicorn.error").addHandler(logging.NullHandler())
    logging.getLogger("uvicorn.error").setLevel(logging.ERROR)  # as an earlier server left it
    configure_logging("info", "json", stream)

    logging.getLogger("uvicorn.error").info(
        "Started server process [%d]", 7, extra={"color_message": "Started [\x1b[36m%d\x1b[0m]"}
    )

    [line] = lines(stream)
    assert line["logger"] == "uvicorn.error"
    assert line["message"] == "Started server process [7]"
    assert "color_message" not in line  # uvicorn's copy with terminal colour codes


def test_configuring_twice_keeps_one_handler(stream: io.StringIO) -> None:
    configure_logging("info", "json", io.StringIO())
    configure_logging("info", "json", stream)
    log.info("once")
    assert len(lines(stream)) == 1


def test_text_format_appends_the_ids(stream: io.StringIO) -> None:
    configure_logging("info", "text", stream)
    log.info("hello", extra={"job_id": "job-7"})
    [line] = stream.getvalue().splitlines()
    assert line.endswith("INFO backserv.test: hello [job_id=job-7]")


async def test_a_line_logged_in_a_request_carries_its_request_id(stream: io.StringIO) -> None:
    async def endpoint(request: Request) -> PlainTextResponse:
        log.info("handling")
        return PlainTextResponse("ok")

    app = Starlette(routes=[Route("/", endpoint)], middleware=[Middleware(RequestIdMiddleware)])
    configure_logging("info", "json", stream)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
        resp = await client.get("/")

    [line] = [line for line in lines(stream) if line["message"] == "handling"]
    assert line["request_id"] == resp.headers["x-request-id"]
    assert line["request_id"].startswith("req_")


class LoggingProvider(FakeProvider):
    """A fake provider that logs on submit, without passing a job id."""

    async def submit(
        self, route: RouteSpec, job_input: dict[str, Any], *, job_id: str, kind: str
    ) -> ProviderRef:
        logging.getLogger("providers.fake").info("submitting")
        return await super().submit(route, job_input, job_id=job_id, kind=kind)


async def test_a_line_logged_while_a_job_runs_carries_its_job_id(
    stream: io.StringIO, tmp_path: Path
) -> None:
    catalog = parse_catalog(
        {"models": [{"id": "m", "kind": "image", "routes": [{"provider": "fake", "target": "x"}]}]},
        ["fake"],
        source="test",
    )
    store = SQLiteJobStore(tmp_path / "jobs.db")
    await store.open()
    try:
        runner = JobRunner(
            store,
            {"fake": LoggingProvider("fake")},
            LocalStorage(tmp_path / "files", OutputSource(max_bytes=1_000_000)),
            RetryPolicy(1, 0.001, 0.01),
            job_timeout=10.0,
        )
        scheduler = Scheduler(store, catalog, runner, concurrency={"fake": 1})
        job, _ = await JobService(store, catalog).submit(
            JobRequest(owner="alice", model=catalog.get("m"), input={"prompt": "a fox"})
        )
        configure_logging("info", "json", stream)
        await scheduler.run_until_idle(timeout=10)
    finally:
        await store.close()

    [line] = [line for line in lines(stream) if line["message"] == "submitting"]
    assert line["job_id"] == job.id
    assert line["logger"] == "providers.fake"


def test_settings_refuse_an_unknown_level_and_format() -> None:
    assert Settings(_env_file=None, log_level="DEBUG", log_format="TEXT").log_format == "text"
    with pytest.raises(ValidationError, match="log_level"):
        Settings(_env_file=None, log_level="loud")
    with pytest.raises(ValidationError, match="log_format"):
        Settings(_env_file=None, log_format="xml")


def test_httpx_request_lines_lose_the_query_and_undo_removes_the_filter(
    stream: io.StringIO,
) -> None:
    httpx_log = logging.getLogger("httpx")
    url = httpx.URL("https://hooks.example/in?token=SECRET")
    undo = configure_logging("info", "json", stream)
    try:
        httpx_log.info('HTTP Request: %s %s "%s %d %s"', "POST", url, "HTTP/1.1", 200, "OK")
    finally:
        undo()

    [line] = lines(stream)
    assert line["message"] == 'HTTP Request: POST https://hooks.example/in "HTTP/1.1 200 OK"'
    assert not any(isinstance(f, RedactUrlArgs) for f in httpx_log.filters)
