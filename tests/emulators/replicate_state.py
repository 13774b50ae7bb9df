"""The Replicate emulator's predictions: their JSON, logs and outputs, read off the clock."""

from __future__ import annotations

import base64
import hashlib
import math
import random
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import httpx

from tests.emulators.control import Behaviour, Clock, EmulatorState
from tests.emulators.media import (
    mp4_name,
    png_name,
    requested_count,
    requested_size,
    wants_video,
)
from tests.emulators.replicate_webhooks import ReplicateWebhooks, StandardWebhooksSigner
from tests.emulators.timeline import TERMINAL_PHASES, Phase, Timeline
from tests.emulators.webhooks import WebhookDispatcher, check_target

STATUSES: dict[Phase, str] = {
    "queued": "starting",
    "running": "processing",
    "succeeded": "succeeded",
    "failed": "failed",
    "cancelled": "canceled",
    "timed_out": "canceled",
    "expired": "aborted",
}
_BAR_PARTS = " ▏▎▍▌▋▊▉"
_COMPLETED_FAULTS = ("webhook:completed", "webhook")


@dataclass
class ReplicatePrediction:
    id: str
    model: str
    version: str
    key: str  # what submissions are counted by
    input: dict[str, Any]
    base_url: str
    timeline: Timeline
    seed: int
    video: bool
    error: str | None


def _iso(timestamp: float) -> str:
    return datetime.fromtimestamp(timestamp, UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _clock_text(seconds: float) -> str:
    whole = round(seconds)
    return f"{whole // 60:02d}:{whole % 60:02d}"


def tqdm_line(step: int, steps: int, span: float) -> str:
    """A tqdm progress line: `` 45%|████▌     | 9/20 [00:01<00:01,  8.00it/s]``."""
    filled = 10 * step / steps
    full = int(filled)
    bar = "█" * full
    if full < 10:
        bar += _BAR_PARTS[int((filled - full) * 8)]
    per_step = span / steps
    rate = 1 / per_step if per_step > 0 else 0.0
    timing = f"{_clock_text(step * per_step)}<{_clock_text((steps - step) * per_step)}"
    return f"{step * 100 // steps:3d}%|{bar:<10}| {step}/{steps} [{timing}, {rate:5.2f}it/s]"


def new_id() -> str:
    return base64.b32encode(secrets.token_bytes(20)).decode().lower()[:26]


def version_of(name: str) -> str:
    return hashlib.sha256(name.encode()).hexdigest()


class ReplicateEmulator(EmulatorState):
    """The Replicate emulator's state: ``predictions`` by id, plus the shared controls; its
    webhooks are signed by ``signer`` (``signer.secret``) and sent by ``webhooks`` (through
    ``webhook_transport`` when one is given)."""

    name = "replicate"

    def __init__(
        self,
        behaviour: Behaviour | None = None,
        clock: Clock | None = None,
        *,
        webhook_transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        super().__init__(behaviour, clock)
        self.signer = StandardWebhooksSigner()
        webhook_format = ReplicateWebhooks(self, self.signer)
        self.webhooks: WebhookDispatcher = WebhookDispatcher(
            webhook_format, lambda: self.behaviour, self.now, webhook_transport
        )
        self.predictions: dict[str, ReplicatePrediction] = {}
        self._order: list[str] = []
        self._bucket_limit = 0
        self._tokens = 0.0
        self._refilled = 0.0

    def clear_jobs(self) -> None:
        self.predictions.clear()
        self._order.clear()
        self._bucket_limit = 0

    def create(
        self,
        *,
        key: str,
        model: str,
        version: str,
        input: dict[str, Any],
        base_url: str = "http://testserver/",
        cancel_after: float | None = None,
        webhook: str | None = None,
        webhook_events: frozenset[str] = frozenset(),
    ) -> ReplicatePrediction:
        """Create a prediction as a create call would (also usable directly from a test). With
        ``webhook`` (loopback only, else WebhookTargetError) its ``webhook_events`` are POSTed
        there (replicate_webhooks.py)."""
        if webhook is not None:
            check_target(webhook)
        fails = self.behaviour.next_run_fails()
        timeline = self.plan(fails, cancel_after)
        early = webhook is not None and bool(
            self.behaviour.take_webhook_fault(_COMPLETED_FAULTS, "early")
        )
        if early:
            timeline.finish_now()
        seed = input.get("seed")
        prediction = ReplicatePrediction(
            id=new_id(),
            model=model,
            version=version,
            key=key,
            input=input,
            base_url=base_url,
            timeline=timeline,
            seed=seed if isinstance(seed, int) else random.randrange(2**31),
            video=wants_video(model, self.behaviour.output),
            error=self.behaviour.run_error if fails else None,
        )
        self.predictions[prediction.id] = prediction
        self._order.append(prediction.id)
        self.log.submits_accepted[key] += 1
        if webhook is not None:
            self.webhooks.subscribe(prediction.id, prediction, webhook, webhook_events, early=early)
        return prediction

    def throttle(self) -> int | None:
        """Seconds until the next create is allowed, or None (a token was taken)."""
        limit = self.behaviour.rate_limit_per_minute
        if limit <= 0:
            return None
        now = self.now()
        rate = limit / 60
        if self._bucket_limit != limit:
            self._bucket_limit, self._tokens, self._refilled = limit, float(limit), now
        self._tokens = min(float(limit), self._tokens + (now - self._refilled) * rate)
        self._refilled = now
        if self._tokens >= 1:
            self._tokens -= 1
            return None
        return max(1, math.ceil((1 - self._tokens) / rate))

    def cancel(self, prediction: ReplicatePrediction) -> None:
        if prediction.timeline.cancel(self.now(), self.behaviour.cancel_stops_running):
            self.webhooks.poke(prediction.id)

    def logs_of(self, prediction: ReplicatePrediction, now: float, phase: Phase) -> str:
        timeline = prediction.timeline
        if now < timeline.started or timeline.ended_at() < timeline.started:
            return ""
        steps = self.behaviour.progress_steps
        span = timeline.finished - timeline.started
        done = math.floor(timeline.progress(now) * steps)
        lines = [f"Using seed: {prediction.seed}"]
        lines.extend(tqdm_line(step, steps, span) for step in range(done + 1))
        if phase == "failed":
            lines += [
                "Traceback (most recent call last):",
                '  File "/src/predict.py", line 42, in predict',
                f"RuntimeError: {prediction.error}",
            ]
        return "\n".join(lines) + "\n"

    def output_of(self, prediction: ReplicatePrediction) -> str | list[str]:
        files = f"{prediction.base_url}files/"
        if prediction.video:
            return files + mp4_name(prediction.id)
        size = requested_size(prediction.input)
        count = requested_count(prediction.input, "num_outputs", limit=4)
        return [files + png_name(prediction.id, i, size) for i in range(count)]

    def to_json(self, prediction: ReplicatePrediction, at: float | None = None) -> dict[str, Any]:
        """The prediction as the API shows it now, or as it was ``at`` that time."""
        now = self.now() if at is None else at
        timeline = prediction.timeline
        phase = timeline.phase(now)
        terminal = phase in TERMINAL_PHASES
        started = now >= timeline.started and timeline.ended_at() >= timeline.started
        ran = timeline.ran_until(now) - timeline.started
        metrics: dict[str, Any] = {}
        if terminal and started:
            metrics = {"predict_time": round(ran, 3)}
            metrics["total_time"] = round(timeline.ended_at() - timeline.created, 3)
        api = f"{prediction.base_url}v1/predictions/{prediction.id}"
        return {
            "id": prediction.id,
            "model": prediction.model,
            "version": prediction.version,
            "input": prediction.input,
            "logs": self.logs_of(prediction, now, phase),
            "output": self.output_of(prediction) if phase == "succeeded" else None,
            "data_removed": False,
            "error": prediction.error if phase == "failed" else None,
            "status": STATUSES[phase],
            "source": "api",
            "created_at": _iso(timeline.created),
            "started_at": _iso(timeline.started) if started else None,
            "completed_at": _iso(timeline.ended_at()) if terminal else None,
            "metrics": metrics,
            "urls": {
                "get": api,
                "cancel": f"{api}/cancel",
                "stream": f"{api}/stream",
                "web": f"{prediction.base_url}p/{prediction.id}",
            },
        }

    def page(self, cursor: int | None, base_url: str) -> dict[str, Any]:
        """Newest first; the cursor is the position just past the page in creation order."""
        size = self.behaviour.page_size
        end = len(self._order) if cursor is None else max(0, min(cursor, len(self._order)))
        start = max(0, end - size)
        ids = reversed(self._order[start:end])
        url = f"{base_url}v1/predictions?cursor="
        return {
            "previous": f"{url}{end + size}" if end < len(self._order) else None,
            "next": f"{url}{start}" if start > 0 else None,
            "results": [self.to_json(self.predictions[i]) for i in ids],
        }
