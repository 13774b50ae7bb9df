"""``GET /v1/jobs/{id}/events``: a job's changes as Server-Sent Events, over a real socket."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from gateway.app import create_app
from tests.api.support import assert_error
from tests.conftest import AUTH_A, AUTH_B, make_settings
from tests.emulators.server import serve

TERMINAL_EVENTS = {"completed", "failed", "cancelled"}


@dataclass
class Event:
    id: str
    event: str
    data: dict[str, Any]


@contextlib.asynccontextmanager
async def gateway(tmp_path: Path, **overrides: Any) -> AsyncIterator[httpx.AsyncClient]:
    """The gateway app served by uvicorn on 127.0.0.1, and a client for it (key A)."""
    app = create_app(make_settings(tmp_path, **overrides))
    async with serve(app) as url, httpx.AsyncClient(base_url=url, headers=AUTH_A) as client:
        yield client


async def submit(client: httpx.AsyncClient, prompt: str = "a red fox") -> str:
    body = {"model": "sandbox-image", "prompt": prompt, "width": 64, "height": 64}
    resp = await client.post("/v1/jobs/images", json=body)
    assert resp.status_code == 202, resp.text
    job_id: str = resp.json()["id"]
    return job_id


async def parse(lines: AsyncIterator[str]) -> AsyncIterator[Event]:
    """SSE frames (``id``/``event``/``data`` lines, blank line ends one; ``:`` is a comment)."""
    fields: dict[str, str] = {}
    async for line in lines:
        if line == "":
            if fields:
                assert set(fields) == {"id", "event", "data"}, fields
                yield Event(fields["id"], fields["event"], json.loads(fields["data"]))
                fields = {}
            continue
        if line.startswith(":"):
            continue
        name, _, value = line.partition(":")
        assert name not in fields, (name, fields)
        fields[name] = value.removeprefix(" ")
    assert not fields, f"the stream ended inside a frame: {fields}"


@contextlib.asynccontextmanager
async def open_stream(
    client: httpx.AsyncClient, job_id: str, last_event_id: str | bytes | None = None
) -> AsyncIterator[AsyncIterator[Event]]:
    headers = {} if last_event_id is None else {"Last-Event-ID": last_event_id}
    async with client.stream("GET", f"/v1/jobs/{job_id}/events", headers=headers) as resp:
        assert resp.status_code == 200
        assert resp.headers["content-type"].startswith("text/event-stream")
        assert resp.headers["cache-control"] == "no-cache"
        assert resp.headers["x-request-id"]
        yield parse(resp.aiter_lines())


async def collect(
    client: httpx.AsyncClient,
    job_id: str,
    last_event_id: str | bytes | None = None,
    timeout: float = 10,
) -> list[Event]:
    """Every event until the server closes the stream (which must happen within timeout)."""
    async with asyncio.timeout(timeout), open_stream(client, job_id, last_event_id) as events:
        return [event async for event in events]


def check_ids_grow(events: list[Event]) -> None:
    ids = [e.id for e in events]
    assert ids == sorted(set(ids)), ids


def check_job_bodies(events: list[Event], job_id: str) -> None:
    for event in events:
        assert event.data["object"] == "job"
        assert event.data["id"] == job_id


async def test_events_arrive_in_order_and_end_with_the_completed_job(tmp_path: Path) -> None:
    async with gateway(tmp_path, sandbox_latency=1.0) as client:
        job_id = await submit(client)
        started = time.monotonic()
        events = await collect(client, job_id)
        elapsed = time.monotonic() - started
        final = (await client.get(f"/v1/jobs/{job_id}")).json()

    names = [e.event for e in events]
    assert names[0] == "status", names
    assert names[-1] == "completed", names
    assert not TERMINAL_EVENTS & set(names[:-1]), names
    check_ids_grow(events)
    check_job_bodies(events, job_id)

    progress = [e.data["progress"] for e in events if e.event == "progress"]
    assert len(progress) >= 2, names  # a 1 s sandbox job reports progress a few times a second
    assert progress == sorted(set(progress)), progress  # rising
    assert all(0 <= p < 100 for p in progress), progress
    for event in events:
        if event.event == "progress":
            assert event.data["status"] == "PROCESSING"

    last = events[-1].data
    assert last["status"] == "COMPLETED"
    assert last["progress"] == 100
    assert last["result"]["images"][0]["width"] == 64
    assert last == final  # the same body as GET /v1/jobs/{id}
    assert elapsed < 3.0, elapsed  # the stream closed after the terminal event


async def test_a_queued_job_shows_a_status_event_when_it_starts(tmp_path: Path) -> None:
    async with gateway(
        tmp_path, sandbox_latency=0.5, provider_concurrency={"sandbox": 1}
    ) as client:
        blocker = await submit(client, "first")
        job_id = await submit(client, "second")  # waits for the only sandbox slot
        events = await collect(client, job_id)
        assert (await client.get(f"/v1/jobs/{blocker}")).json()["status"] == "COMPLETED"

    statuses = [(e.event, e.data["status"]) for e in events if e.event == "status"]
    assert statuses == [("status", "QUEUED"), ("status", "PROCESSING")], statuses
    assert events[0].event == "status" and events[0].data["status"] == "QUEUED"
    assert events[-1].event == "completed"
    check_ids_grow(events)
    check_job_bodies(events, job_id)
    seen = [e.data["status"] for e in events]
    assert seen == sorted(seen, key=["QUEUED", "PROCESSING", "COMPLETED"].index), seen


async def test_reconnecting_mid_stream_resumes_after_the_last_event(tmp_path: Path) -> None:
    async with gateway(tmp_path, sandbox_latency=1.0) as client:
        job_id = await submit(client)
        first: list[Event] = []
        async with asyncio.timeout(10), open_stream(client, job_id) as events:
            async for event in events:
                first.append(event)
                if event.event == "progress":
                    break  # the connection drops here
        assert first[-1].event == "progress"
        last_id = first[-1].id

        rest = await collect(client, job_id, last_event_id=last_id)

    assert rest, "the reconnect got nothing"
    assert rest[-1].event == "completed"
    assert rest[-1].data["status"] == "COMPLETED"
    assert all(e.id > last_id for e in rest), ([e.id for e in rest], last_id)
    check_ids_grow(first + rest)


async def test_reconnect_after_the_end_still_gets_the_terminal_event(tmp_path: Path) -> None:
    async with gateway(tmp_path, sandbox_latency=0.6) as client:
        job_id = await submit(client)
        events = await collect(client, job_id)
        assert len(events) >= 3, [e.event for e in events]
        terminal = events[-1]
        assert terminal.event == "completed"

        # a client that missed the end: it saw an intermediate event only
        for seen in events[:-1]:
            again = await collect(client, job_id, last_event_id=seen.id)
            assert [e.event for e in again] == ["completed"], (seen.event, again)
            assert again[0].id == terminal.id
            assert again[0].data == terminal.data

        # a client that saw the end gets an empty stream that closes at once
        started = time.monotonic()
        nothing = await collect(client, job_id, last_event_id=terminal.id)
        assert nothing == []
        assert time.monotonic() - started < 1.0


async def test_a_last_event_id_the_server_never_issued_does_not_hide_the_end(
    tmp_path: Path,
) -> None:
    """An id that is not one of the stream's (a proxy's, another format) is ignored: the
    stream starts over rather than dropping every event, the terminal one included."""
    async with gateway(tmp_path, sandbox_latency=0.0) as client:
        job_id = await submit(client)
        assert (await client.get(f"/v1/jobs/{job_id}?wait=5")).json()["status"] == "COMPLETED"
        superscripts = ("\u00b2" * 20).encode("latin-1")  # 20 characters str.isdigit() takes
        for foreign in ("not-an-event-id", "evt_123", superscripts):
            events = await collect(client, job_id, last_event_id=foreign)
            assert [e.event for e in events] == ["completed"], (foreign, events)


async def test_a_failed_job_ends_with_failed(tmp_path: Path) -> None:
    async with gateway(
        tmp_path, sandbox_latency=0.3, sandbox_failure_rate=1.0, max_route_attempts=1
    ) as client:
        job_id = await submit(client)
        events = await collect(client, job_id)
    assert events[0].event == "status"
    assert events[-1].event == "failed"
    assert events[-1].data["status"] == "FAILED"
    assert events[-1].data["error"]["message"]
    assert "result" not in events[-1].data
    assert not TERMINAL_EVENTS & {e.event for e in events[:-1]}
    check_ids_grow(events)


async def test_a_cancelled_job_ends_with_cancelled(tmp_path: Path) -> None:
    async with gateway(tmp_path, sandbox_latency=5.0) as client:
        job_id = await submit(client)
        received: list[Event] = []
        started = time.monotonic()
        async with asyncio.timeout(10), open_stream(client, job_id) as events:
            async for event in events:
                received.append(event)
                if len(received) == 1:
                    resp = await client.post(f"/v1/jobs/{job_id}/cancel")
                    assert resp.status_code == 200, resp.text
        assert time.monotonic() - started < 3.0  # ended by the cancel, not the 5 s job
    assert received[0].event == "status"
    assert received[-1].event == "cancelled"
    assert received[-1].data["status"] == "CANCELLED"
    check_ids_grow(received)


async def test_stream_of_a_job_already_finished_is_one_terminal_event(tmp_path: Path) -> None:
    async with gateway(tmp_path, sandbox_latency=0.0) as client:
        job_id = await submit(client)
        done = (await client.get(f"/v1/jobs/{job_id}?wait=5")).json()
        assert done["status"] == "COMPLETED"
        events = await collect(client, job_id)
    assert [e.event for e in events] == ["completed"]
    assert events[0].data == done


async def test_another_key_unknown_job_and_missing_key(tmp_path: Path) -> None:
    async with gateway(tmp_path, sandbox_latency=0.0) as client:
        job_id = await submit(client)
        other = await client.get(f"/v1/jobs/{job_id}/events", headers=AUTH_B)
        assert_error(other, 404, code="job_not_found")
        unknown = await client.get("/v1/jobs/job-000000000000000000000000/events")
        assert_error(unknown, 404, code="job_not_found")
        anonymous = await client.get(f"/v1/jobs/{job_id}/events", headers={"Authorization": ""})
        assert_error(anonymous, 401, error_type="authentication_error")
        assert anonymous.headers["x-request-id"]


async def test_a_dropped_connection_releases_its_watch(tmp_path: Path) -> None:
    app = create_app(make_settings(tmp_path, sandbox_latency=5.0))
    gw = app.state.gateway
    async with serve(app) as url, httpx.AsyncClient(base_url=url, headers=AUTH_A) as client:
        job_id = await submit(client)
        async with asyncio.timeout(5), open_stream(client, job_id) as events:
            async for _event in events:
                assert gw.events.watching == 1
                break  # the client goes away while the job runs
        deadline = time.monotonic() + 3
        while gw.events.watching:
            assert time.monotonic() < deadline, "the stream kept watching a gone client"
            await asyncio.sleep(0.02)
        resp = await client.post(f"/v1/jobs/{job_id}/cancel")
        assert resp.status_code == 200, resp.text
