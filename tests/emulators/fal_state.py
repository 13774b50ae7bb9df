"""The fal emulator's requests: their status, logs, results and outputs, read off the clock."""

from __future__ import annotations

import math
import random
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import httpx

from tests.emulators.control import Behaviour, Clock, EmulatorState
from tests.emulators.fal_webhooks import FalSigner, FalWebhooks
from tests.emulators.media import (
    mp4_bytes,
    mp4_name,
    png_name,
    requested_count,
    requested_size,
    wants_video,
)
from tests.emulators.timeline import TERMINAL_PHASES, Phase, Timeline
from tests.emulators.webhooks import WebhookDispatcher, check_target

CANCELLED_TYPE = "request_cancelled"
TIMEOUT_TYPE = "request_timeout"
_COMPLETED_FAULTS = ("webhook:completed", "webhook")


@dataclass(frozen=True)
class FalFailure:
    """How a failed run answers: the result's status and body, the status's error fields."""

    status: int
    body: dict[str, Any]
    error: str
    error_type: str | None


@dataclass
class FalJob:
    request_id: str
    endpoint: str  # as submitted: owner/app[/path]
    app: str  # owner/app, what the request URLs use
    base_url: str
    arguments: dict[str, Any]
    headers: dict[str, str]
    timeline: Timeline
    queue_position: int
    seed: int
    video: bool
    failure: FalFailure | None

    @property
    def urls(self) -> dict[str, str]:
        base = f"{self.base_url}{self.app}/requests/{self.request_id}"
        return {
            "response_url": base,
            "status_url": f"{base}/status",
            "cancel_url": f"{base}/cancel",
        }


def _seed(arguments: dict[str, Any]) -> int:
    seed = arguments.get("seed")
    if isinstance(seed, int) and not isinstance(seed, bool):
        return seed
    return random.randrange(2**31)


def _iso(timestamp: float) -> str:
    return datetime.fromtimestamp(timestamp, UTC).isoformat()


def _log(message: str, timestamp: float, level: str = "INFO") -> dict[str, Any]:
    return {"message": message, "level": level, "source": "user", "timestamp": _iso(timestamp)}


class FalEmulator(EmulatorState):
    """The fal emulator's state: ``jobs`` by request id, plus the shared controls; its
    webhooks are signed by ``signer`` and sent by ``webhooks`` (through ``webhook_transport``
    when one is given, e.g. an ``httpx.ASGITransport`` of the receiving app)."""

    name = "fal"

    def __init__(
        self,
        behaviour: Behaviour | None = None,
        clock: Clock | None = None,
        *,
        webhook_transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        super().__init__(behaviour, clock)
        self.jobs: dict[str, FalJob] = {}
        self.signer = FalSigner()
        self.webhooks: WebhookDispatcher = WebhookDispatcher(
            FalWebhooks(self, self.signer), lambda: self.behaviour, self.now, webhook_transport
        )

    def clear_jobs(self) -> None:
        self.jobs.clear()

    def submit(
        self,
        endpoint: str,
        arguments: dict[str, Any],
        *,
        base_url: str = "http://testserver/",
        headers: dict[str, str] | None = None,
        start_timeout: float | None = None,
        webhook_url: str | None = None,
    ) -> FalJob:
        """Queue a request as a submit would (also usable directly from a test). With
        ``webhook_url`` (loopback only, else WebhookTargetError) its end is POSTed there."""
        owner, app, *_ = endpoint.split("/")
        behaviour = self.behaviour
        if webhook_url is not None:
            check_target(webhook_url)
        timeline = self.plan(fails=False, deadline_after=start_timeout)
        if timeline.deadline is not None and timeline.deadline >= timeline.started:
            timeline.deadline = None  # a start deadline that is met changes nothing
        early = webhook_url is not None and bool(
            behaviour.take_webhook_fault(_COMPLETED_FAULTS, "early")
        )
        if early:
            timeline.finish_now()
        job = FalJob(
            request_id=str(uuid.uuid4()),
            endpoint=endpoint,
            app=f"{owner}/{app}",
            base_url=base_url,
            arguments=arguments,
            headers=headers or {},
            timeline=timeline,
            queue_position=0 if early else behaviour.queue_position,
            seed=_seed(arguments),
            video=wants_video(endpoint, behaviour.output),
            failure=self._planned_failure(arguments),
        )
        timeline.fails = job.failure is not None
        self.jobs[job.request_id] = job
        self.log.submits_accepted[endpoint] += 1
        if webhook_url is not None:
            self.webhooks.subscribe(job.request_id, job, webhook_url, ("completed",), early=early)
        return job

    def _planned_failure(self, arguments: dict[str, Any]) -> FalFailure | None:
        behaviour = self.behaviour
        missing = [k for k in behaviour.required_inputs if k not in arguments]
        if missing:
            detail = [
                {"loc": ["body", k], "msg": "field required", "type": "value_error.missing"}
                for k in missing
            ]
            return FalFailure(422, {"detail": detail}, f"missing input: {missing}", None)
        if not behaviour.next_run_fails():
            return None
        message, status = behaviour.run_error, behaviour.run_error_status
        body: dict[str, Any]
        if status == 422:
            body = {"detail": [{"loc": ["body"], "msg": message, "type": "value_error"}]}
        else:
            body = {"detail": message, "error_type": behaviour.run_error_type}
        return FalFailure(status, body, message, behaviour.run_error_type)

    def queue_position_of(self, job: FalJob, now: float) -> int:
        timeline = job.timeline
        waiting = timeline.started - timeline.created
        if waiting <= 0 or job.queue_position <= 0:
            return 0
        left = max(0.0, timeline.started - now) / waiting
        return min(job.queue_position, math.ceil(job.queue_position * left))

    def logs_of(self, job: FalJob, now: float, phase: Phase) -> list[dict[str, Any]]:
        timeline = job.timeline
        if now < timeline.started or timeline.ended_at() < timeline.started:
            return []
        steps = self.behaviour.progress_steps
        span = timeline.finished - timeline.started
        logs = [_log("Starting generation", timeline.started)]
        done = math.floor(timeline.progress(now) * steps)
        logs.extend(
            _log(f"Step {k}/{steps}", timeline.started + span * k / steps)
            for k in range(1, done + 1)
        )
        if phase == "failed" and job.failure is not None:
            logs.append(_log(job.failure.error, timeline.finished, "ERROR"))
        elif phase == "succeeded":
            logs.append(_log("Generation finished", timeline.finished))
        return logs

    def _error_of(self, job: FalJob, phase: Phase) -> tuple[str, str | None] | None:
        if phase == "cancelled":
            return "Request was cancelled", CANCELLED_TYPE
        if phase == "expired":
            return "Request timed out before it started", TIMEOUT_TYPE
        if phase == "failed" and job.failure is not None:
            return job.failure.error, job.failure.error_type
        return None

    def status_of(self, job: FalJob, with_logs: bool) -> tuple[int, dict[str, Any], dict[str, str]]:
        now = self.now()
        phase = job.timeline.phase(now)
        body: dict[str, Any] = {"request_id": job.request_id, **job.urls}
        logs = self.logs_of(job, now, phase) if with_logs else None
        if phase == "queued":
            position = self.queue_position_of(job, now)
            return 202, {"status": "IN_QUEUE", "queue_position": position, "logs": None, **body}, {}
        if phase == "running":
            return 202, {"status": "IN_PROGRESS", "logs": logs, **body}, {}
        timeline = job.timeline
        ran = timeline.ran_until(now) - timeline.started
        metrics = (
            {"inference_time": round(ran, 3)} if timeline.ended_at() >= timeline.started else {}
        )
        body.update(status="COMPLETED", logs=logs, metrics=metrics)
        headers: dict[str, str] = {}
        if error := self._error_of(job, phase):
            body["error"], body["error_type"] = error
            if error[1]:
                headers["X-Fal-Error-Type"] = error[1]
        return 200, body, headers

    def result_of(self, job: FalJob) -> tuple[int, Any, dict[str, str]]:
        phase = job.timeline.phase(self.now())
        if phase not in TERMINAL_PHASES:
            return 400, {"detail": "Request is still in progress"}, {}
        if phase == "succeeded":
            return 200, self.output_of(job), {}
        if phase == "failed" and job.failure is not None:
            failure = job.failure
            headers = {"X-Fal-Error-Type": failure.error_type} if failure.error_type else {}
            return failure.status, failure.body, headers
        if phase == "expired":
            body = {"detail": "Request timed out", "error_type": TIMEOUT_TYPE}
            return (
                504,
                body,
                {"X-Fal-Error-Type": TIMEOUT_TYPE, "X-Fal-Request-Timeout-Type": "user"},
            )
        body = {"detail": "Request was cancelled", "error_type": CANCELLED_TYPE}
        return 400, body, {"X-Fal-Error-Type": CANCELLED_TYPE}

    def output_of(self, job: FalJob) -> dict[str, Any]:
        files = f"{job.base_url}files/"
        timings = {"inference": round(job.timeline.finished - job.timeline.started, 3)}
        if job.video:
            name = mp4_name(job.request_id)
            video = {
                "url": files + name,
                "content_type": "video/mp4",
                "file_name": name,
                "file_size": len(mp4_bytes()),
            }
            return {"video": video, "seed": job.seed, "timings": timings}
        width, height = requested_size(job.arguments)
        count = requested_count(job.arguments, "num_images")
        images = [
            {
                "url": files + png_name(job.request_id, i, (width, height)),
                "width": width,
                "height": height,
                "content_type": "image/png",
            }
            for i in range(count)
        ]
        return {
            "images": images,
            "seed": job.seed,
            "prompt": job.arguments.get("prompt"),
            "has_nsfw_concepts": [False] * count,
            "timings": timings,
        }

    def cancel(self, job: FalJob) -> tuple[int, dict[str, Any]]:
        if job.timeline.cancel(self.now(), self.behaviour.cancel_stops_running):
            self.webhooks.poke(job.request_id)
            return 202, {"status": "CANCELLATION_REQUESTED"}
        return 400, {"status": "ALREADY_COMPLETED"}
