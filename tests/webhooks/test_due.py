"""Which deliveries a job owes and what they carry (gateway/webhooks/due.py), in both words:
Back.Serv's job events, and OpenAI's video events for jobs made through /v1/videos."""

from __future__ import annotations

import orjson

from gateway.jobs import Job, Status
from gateway.webhooks.due import due_events, new_delivery


def job(status: Status, fmt: str | None = None, **hook: object) -> Job:
    webhook: dict[str, object] = {"url": "https://hooks.example.com/x", **hook}
    if fmt is not None:
        webhook["format"] = fmt
    j = Job(
        id="job-0123456789abcdef01234567",
        owner="alice",
        kind="video",
        model="sandbox-video",
        input={"prompt": "p"},
        lane="sandbox",
        meta={"webhook": webhook},
    )
    j.status = status
    j.started_at = 1.0
    j.progress = 50
    return j


def test_an_openai_video_webhook_owes_only_its_terminal_event() -> None:
    for status in (Status.QUEUED, Status.PROCESSING):
        assert due_events(job(status, "openai", events=["started", "progress"])) == []
    types = {s: [d.type for d in due_events(job(s, "openai"))] for s in Status if s.terminal}
    assert types == {
        Status.COMPLETED: ["video.completed"],
        Status.FAILED: ["video.failed"],
        Status.CANCELLED: ["video.failed"],
    }


def test_an_openai_delivery_is_an_event_object_with_the_video_id() -> None:
    j = job(Status.COMPLETED, "openai")
    [due] = due_events(j)
    payload = orjson.loads(new_delivery(j, due, {"ignored": True}, 1700000000.5).payload)
    assert payload["id"].startswith("evt_") and len(payload["id"]) > 10
    assert payload == {
        "id": payload["id"],
        "object": "event",
        "created_at": 1700000000,
        "type": "video.completed",
        "data": {"id": j.id},
    }


def test_a_backserv_webhook_keeps_its_job_events() -> None:
    j = job(Status.PROCESSING, events=["started", "progress", "completed"])
    assert [d.type for d in due_events(j)] == ["job.started", "job.progress"]
    [due] = [d for d in due_events(job(Status.COMPLETED)) if d.key == "completed"]
    payload = orjson.loads(new_delivery(job(Status.COMPLETED), due, {"id": "x"}, 5.0).payload)
    assert payload == {"type": "job.completed", "timestamp": 5, "data": {"id": "x"}}
