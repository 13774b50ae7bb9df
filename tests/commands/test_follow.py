"""How ``backserv run`` follows a job (gateway/commands/run.py's ``follow``) and shows it
(gateway/commands/progress.py), against a scripted gateway (httpx.MockTransport)."""

from __future__ import annotations

import io
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from rich.console import Console

from gateway.commands import run as run_command
from gateway.commands.client import GatewayClient
from gateway.commands.progress import BarView, LineView
from gateway.errors import RemoteCallFailed

JOB = "job-000000000000000000000001"


def job(status: str, progress: int = 0, position: int | None = None) -> dict[str, Any]:
    return {"id": JOB, "status": status, "progress": progress, "queue_position": position}


def frame(name: str, eid: str, body: dict[str, Any]) -> bytes:
    return f"id: {eid}\nevent: {name}\ndata: ".encode() + orjson.dumps(body) + b"\n\n"


class Gateway:
    """Answers the job's event stream from a script: one list of frames per connection (or
    an HTTP status), and ``GET /v1/jobs/{id}`` with each of ``states`` in turn (the last
    one for good)."""

    def __init__(self, streams: list[list[bytes] | int], *states: dict[str, Any]) -> None:
        self.streams: Iterator[list[bytes] | int] = iter(streams)
        self.states = list(states)
        self.last_event_ids: list[str | None] = []
        self.gets = 0

    def __call__(self, request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("/events"):
            self.last_event_ids.append(request.headers.get("last-event-id"))
            script = next(self.streams, 503)
            if isinstance(script, int):
                return httpx.Response(script, json={"error": {"message": "no stream"}})
            return httpx.Response(200, content=b": keepalive\n\n" + b"".join(script))
        self.gets += 1
        state = self.states.pop(0) if len(self.states) > 1 else self.states[0]
        return httpx.Response(200, json=state)


@pytest.fixture(autouse=True)
def no_waiting(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(run_command, "POLL_SECONDS", 0.0)


async def follow(gateway: Gateway, start: dict[str, Any]) -> list[dict[str, Any]]:
    client = GatewayClient("http://gw.test", "k", transport=httpx.MockTransport(gateway))
    seen: list[dict[str, Any]] = []
    try:
        seen.append(await run_command.follow(client, start, seen.append))
    finally:
        await client.aclose()
    return seen


async def test_follow_shows_each_event_until_the_terminal_one() -> None:
    gateway = Gateway(
        [
            [
                frame("status", "1", job("QUEUED", 0, 3)),
                frame("progress", "2", job("QUEUED", 0, 1)),
                frame("status", "3", job("PROCESSING", 40)),
                frame("completed", "4", job("COMPLETED", 100)),
            ]
        ],
        job("COMPLETED", 100),
    )
    seen = await follow(gateway, job("QUEUED"))
    assert [(j["status"], j["progress"], j["queue_position"]) for j in seen] == [
        ("QUEUED", 0, 3),
        ("QUEUED", 0, 1),
        ("PROCESSING", 40, None),
        ("COMPLETED", 100, None),
        ("COMPLETED", 100, None),  # what follow returns
    ]
    assert gateway.gets == 0  # the stream told everything


async def test_a_stream_that_ends_early_is_reopened_where_it_left_off() -> None:
    gateway = Gateway(
        [
            [frame("status", "7", job("PROCESSING", 10))],  # the server's stream limit
            [frame("completed", "9", job("COMPLETED", 100))],
        ],
        job("COMPLETED", 100),
    )
    seen = await follow(gateway, job("QUEUED"))
    assert gateway.last_event_ids == [None, "7"]
    assert seen[-1]["status"] == "COMPLETED"


async def test_a_stream_that_keeps_failing_gives_way_to_reading_the_job() -> None:
    still = [job("PROCESSING", 20)] * 7
    gateway = Gateway([], *still, job("FAILED", 30))  # every stream answers 503

    seen = await follow(gateway, job("PROCESSING", 20))

    assert seen[-1]["status"] == "FAILED"
    assert gateway.gets == 8  # one after each broken stream, then reads alone
    assert len(gateway.last_event_ids) == run_command.STREAM_RETRIES


async def test_an_unreachable_gateway_is_a_remote_call_failure() -> None:
    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("connection refused", request=request)

    client = GatewayClient("http://gw.test", "k", transport=httpx.MockTransport(refuse))
    with pytest.raises(
        RemoteCallFailed, match=re.escape("cannot reach the gateway at http://gw.test")
    ):
        await client.get(JOB)
    await client.aclose()


async def test_a_completed_job_without_files_is_reported(tmp_path: Path) -> None:
    client = GatewayClient(
        "http://gw.test", "k", transport=httpx.MockTransport(Gateway([], job("COMPLETED")))
    )
    done = {**job("COMPLETED", 100), "result": {"images": []}}
    with pytest.raises(RemoteCallFailed, match="without a file"):
        await run_command.save(client, done, tmp_path / "x.png")
    await client.aclose()


def test_line_view_says_the_queue_position_and_steps_of_progress() -> None:
    out = io.StringIO()
    view = LineView(out, JOB)
    for state in (
        job("QUEUED", 0, 3),
        job("QUEUED", 0, 3),  # nothing new: no line
        job("QUEUED", 0, 2),
        job("PROCESSING", 4),
        job("PROCESSING", 9),  # under a step: no line
        job("PROCESSING", 14),
        job("COMPLETED", 100),
    ):
        view.show(state)
    view.close()
    assert out.getvalue().splitlines() == [
        f"{JOB} QUEUED (queue position 3) 0%",
        f"{JOB} QUEUED (queue position 2) 0%",
        f"{JOB} PROCESSING 4%",
        f"{JOB} PROCESSING 14%",
        f"{JOB} COMPLETED 100%",
    ]


def test_bar_view_draws_status_queue_position_and_percentage() -> None:
    out = io.StringIO()
    view = BarView(Console(file=out, force_terminal=True, width=120), JOB)
    view.show(job("QUEUED", 0, 5))
    view.show(job("PROCESSING", 42))
    view.close()
    screen = out.getvalue()
    assert "queue position 5" in screen
    assert "PROCESSING" in screen and "42%" in screen
