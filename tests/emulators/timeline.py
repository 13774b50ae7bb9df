"""A job's life as timestamps planned at submit: its phase is read off the clock when asked.

Nothing runs in the background, so 10,000 jobs in flight cost a dictionary entry each.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Phase = Literal["queued", "running", "succeeded", "failed", "cancelled", "expired", "timed_out"]
TERMINAL_PHASES: frozenset[str] = frozenset(
    {"succeeded", "failed", "cancelled", "expired", "timed_out"}
)


@dataclass
class Timeline:
    """When a job starts and ends, planned at submit; its phase is read off the clock.

    ``deadline`` expires a job that has not started by then (fal ``X-Fal-Request-Timeout``,
    Replicate ``Cancel-After``) and, on Replicate only, stops one still running then.
    """

    created: float
    started: float
    finished: float
    fails: bool = False
    deadline: float | None = None
    cancelled_at: float | None = None
    cancel_requested: bool = False

    def phase(self, now: float) -> Phase:
        if self.cancelled_at is not None and now >= self.cancelled_at:
            return "cancelled"
        deadline = self.deadline
        if deadline is not None and now >= deadline:
            if deadline < self.started:
                return "expired"
            if deadline < self.finished:
                return "timed_out"
        if now < self.started:
            return "queued"
        if now < self.finished:
            return "running"
        return "failed" if self.fails else "succeeded"

    def ended_at(self) -> float:
        """When the job reached (or will reach, barring a cancel) its terminal phase."""
        if self.cancelled_at is not None:
            return self.cancelled_at
        if self.deadline is not None and self.deadline < self.finished:
            return self.deadline
        return self.finished

    def ran_until(self, now: float) -> float:
        """The end of the running stretch as of ``now`` (for progress and run metrics)."""
        return max(self.started, min(now, self.ended_at()))

    def progress(self, now: float) -> float:
        span = self.finished - self.started
        if span <= 0:
            return 1.0 if now >= self.started else 0.0
        return min(1.0, max(0.0, (self.ran_until(now) - self.started) / span))

    def finish_now(self) -> None:
        """End the job the moment it was created (a test's ``early`` webhook fault)."""
        self.started = self.finished = self.created
        self.deadline = None

    def cancel(self, now: float, stop_running: bool) -> bool:
        """Cancel a queued job, or a running one when ``stop_running``; False once over."""
        phase = self.phase(now)
        if phase in TERMINAL_PHASES:
            return False
        self.cancel_requested = True
        if phase == "queued" or stop_running:
            self.cancelled_at = now
        return True
