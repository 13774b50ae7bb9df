"""Jobs: the record, its statuses and their legal transitions, its attempts, and job ids (a
leaf module: it imports nothing of the gateway but its errors)."""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from gateway.errors import Conflict
from gateway.random_ids import RandomIds


class Status(StrEnum):
    QUEUED = "QUEUED"
    PROCESSING = "PROCESSING"
    COMPLETED = "COMPLETED"
    FAILED = "FAILED"
    CANCELLED = "CANCELLED"

    @property
    def terminal(self) -> bool:
        return self in TERMINAL


TERMINAL = frozenset({Status.COMPLETED, Status.FAILED, Status.CANCELLED})

#: The one transition table. PROCESSING -> QUEUED is a hand-back: a lease that expired, or a
#: worker that shut down, returns the job so another worker resumes it.
TRANSITIONS: dict[Status, frozenset[Status]] = {
    Status.QUEUED: frozenset({Status.PROCESSING, Status.CANCELLED}),
    Status.PROCESSING: frozenset(
        {Status.COMPLETED, Status.FAILED, Status.CANCELLED, Status.QUEUED}
    ),
    Status.COMPLETED: frozenset(),
    Status.FAILED: frozenset(),
    Status.CANCELLED: frozenset(),
}


def sources_of(target: Status) -> tuple[Status, ...]:
    """Every status from which ``target`` may be reached (used in conditional updates)."""
    return tuple(s for s, nexts in TRANSITIONS.items() if target in nexts)


def check_transition(current: Status, target: Status, job_id: str) -> None:
    if target not in TRANSITIONS[current]:
        if current.terminal:
            raise Conflict(
                f"Job {job_id} is already {current.value}; it cannot become {target.value}.",
                code="job_already_finished",
            )
        raise Conflict(
            f"Job {job_id} cannot go from {current.value} to {target.value}.",
            code="illegal_transition",
        )


#: ``job-`` and 96 bits from the OS's CSPRNG, in hex, drawn many at a time
#: (gateway/random_ids.py). Not from ``random``: a Mersenne Twister's state, and with it every
#: id to come, follows from 208 of its 96-bit outputs, so one key's ids would tell the ids of
#: every other key's next jobs.
new_job_id = RandomIds("job-")


class Outcome(StrEnum):
    """How an attempt ended (an open attempt has none yet)."""

    #: the provider succeeded and the outputs are stored
    SUCCEEDED = "succeeded"
    #: the provider or the gateway failed it (the attempt's error says why)
    FAILED = "failed"
    #: the user cancelled the job (no verdict on the provider)
    CANCELLED = "cancelled"
    #: the gateway stopped before the provider's answer to the submit was recorded
    INTERRUPTED = "interrupted"


@dataclass
class Attempt:
    """One try of one route: its provider reference, persisted as soon as the provider
    returns it, and how it ended. The log of attempts is a job's memory across crashes."""

    #: 1 for the job's first attempt, counting every route
    n: int
    #: the route's name (``provider:target``) and its place in the job's route chain
    route: str
    route_index: int
    provider: str
    #: the provider's request id and the rest of its reference (None until submitted)
    request_id: str | None = None
    ref: dict[str, Any] | None = None
    started_at: float = field(default_factory=time.time)
    ended_at: float | None = None
    outcome: Outcome | None = None
    #: ``{"code", "message"}`` of a failed or interrupted attempt
    error: dict[str, Any] | None = None
    #: the attempt's cost in micros of the catalog's currency (gateway/pricing.py): as
    #: estimated when it opened, and as final once the provider said (None: unpriced, or
    #: not final yet)
    estimate: int | None = None
    cost: int | None = None
    #: the route's place in the order the job tried its routes (0: its first choice); None
    #: when it is the route's place in the chain (a model whose routes run in order)
    place: int | None = None

    @property
    def choice(self) -> int:
        """The route's place in the order the job tried its routes: 0 for its first choice,
        more for a fallback."""
        return self.route_index if self.place is None else self.place

    @property
    def open(self) -> bool:
        return self.ended_at is None

    @property
    def priced(self) -> bool:
        return self.estimate is not None or self.cost is not None

    @property
    def charge(self) -> int:
        """What the attempt costs as far as is known: its final cost, else (open, cancelled,
        interrupted: the provider may be billing it) its estimate; 0 when unpriced."""
        if self.cost is not None:
            return self.cost
        return self.estimate or 0

    def close(
        self, outcome: Outcome, error: dict[str, Any] | None = None, at: float | None = None
    ) -> None:
        self.ended_at = time.time() if at is None else at
        self.outcome = outcome
        self.error = error

    def to_dict(self) -> dict[str, Any]:
        """The attempt as stored in a job's row and shown by the faces."""
        return {
            "n": self.n,
            "route": self.route,
            "route_index": self.route_index,
            "provider": self.provider,
            "request_id": self.request_id,
            "ref": self.ref,
            "started_at": self.started_at,
            "ended_at": self.ended_at,
            "outcome": None if self.outcome is None else self.outcome.value,
            "error": self.error,
            "estimate": self.estimate,
            "cost": self.cost,
        } | ({} if self.place is None else {"place": self.place})

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Attempt:
        outcome = data.get("outcome")
        return cls(
            n=data["n"],
            route=data["route"],
            route_index=data["route_index"],
            provider=data["provider"],
            request_id=data.get("request_id"),
            ref=data.get("ref"),
            started_at=data["started_at"],
            ended_at=data.get("ended_at"),
            outcome=None if outcome is None else Outcome(outcome),
            error=data.get("error"),
            estimate=data.get("estimate"),
            cost=data.get("cost"),
            place=data.get("place"),
        )


@dataclass
class Job:
    id: str
    owner: str
    kind: str
    model: str
    input: dict[str, Any]
    lane: str
    status: Status = Status.QUEUED
    priority: int = 0
    progress: int = 0
    queue_position: int | None = None
    created_at: float = field(default_factory=time.time)
    updated_at: float | None = None
    started_at: float | None = None
    completed_at: float | None = None
    result: dict[str, Any] | None = None
    error: dict[str, Any] | None = None
    attempts: list[Attempt] = field(default_factory=list)
    meta: dict[str, Any] = field(default_factory=dict)
    #: fencing token: bumped at every claim; writes that finish an attempt must carry it
    lease_token: int = 0
    lease_owner: str | None = None
    lease_expires: float | None = None
    #: the client's ``Idempotency-Key`` (unique per owner) and the hash of the request it
    #: came with; stored in the job's own row, so the job and its key are one insert
    idempotency_key: str | None = None
    request_hash: str | None = None
    #: when the retention janitor deleted the job's result files (None: not yet)
    files_purged_at: float | None = None

    @property
    def provider(self) -> str | None:
        return self.attempts[-1].provider if self.attempts else None

    @property
    def retry_count(self) -> int:
        return max(0, len(self.attempts) - 1)

    @property
    def fallback_used(self) -> bool:
        return any(a.choice > 0 for a in self.attempts)

    def attempt_dicts(self) -> list[dict[str, Any]]:
        """The attempts as stored and shown (``Attempt.to_dict``)."""
        return [a.to_dict() for a in self.attempts]
