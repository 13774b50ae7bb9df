"""What a webhook delivery is made of: the targets allowed, a job's planned events, the
provider's format (events, bodies, signatures), and the record of each attempt."""

from __future__ import annotations

import asyncio
import ipaddress
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any

import httpx
import orjson

from tests.emulators.webhook_faults import WebhookFault


class WebhookTargetError(ValueError):
    """A webhook URL the emulator will not deliver to."""


def check_target(url: object) -> str:
    """The URL when it is http(s) to a loopback host; else WebhookTargetError naming the rule."""
    if not isinstance(url, str):
        raise WebhookTargetError(f"must be a URL string, not {url!r}")
    try:
        parsed = httpx.URL(url)
    except httpx.InvalidURL as exc:
        raise WebhookTargetError(f"not a valid URL: {url!r}") from exc
    if parsed.scheme not in ("http", "https") or not parsed.host:
        raise WebhookTargetError(f"must be an absolute http(s) URL, not {url!r}")
    if parsed.host != "localhost":
        try:
            loopback = ipaddress.ip_address(parsed.host).is_loopback
        except ValueError:
            loopback = False
        if not loopback:
            raise WebhookTargetError(
                "the emulator delivers only to loopback hosts (127.0.0.0/8, ::1, localhost), "
                f"not {parsed.host!r}"
            )
    return url


@dataclass(frozen=True)
class PlannedEvent:
    """One event of a job, due at ``at`` on the emulator's clock; ``key`` is unique per job."""

    at: float
    name: str
    key: str
    terminal: bool = False


class WebhookFormat(ABC):
    """A provider's webhooks: which events a job has, their bodies and their signatures."""

    @abstractmethod
    def plan(self, job: Any) -> list[PlannedEvent]:
        """The job's events, from its timeline as it is now (a cancel changes it)."""

    @abstractmethod
    def render(self, job: Any, event: PlannedEvent) -> bytes:
        """The body delivered for ``event``."""

    @abstractmethod
    def sign(
        self, job: Any, message_id: str, body: bytes, timestamp: int, *, forged: bool
    ) -> dict[str, str]:
        """A delivery's headers; ``forged`` ones carry a signature that does not verify."""

    def retried(self, event: PlannedEvent) -> bool:
        """Whether a failed delivery of ``event`` is sent again."""
        return True


@dataclass(eq=False)
class Subscription:
    """A job's webhook: where to, which events, and what has been sent."""

    job_id: str
    job: Any
    url: str
    events: frozenset[str]
    early: WebhookFault | None = None
    sent: set[str] = field(default_factory=set)
    held: list[Delivery] = field(default_factory=list)
    line: asyncio.Event | None = None  # set once the last delivery's first attempt is over
    due: float | None = None
    over: bool = False


@dataclass(eq=False)
class Delivery:
    subscription: Subscription
    event: PlannedEvent
    body: bytes
    message_id: str
    fault: WebhookFault


@dataclass(frozen=True)
class DeliveryAttempt:
    """One POST the emulator made (or a delivery it dropped), for tests to read.

    ``attempt`` is 0 for the first try and counts retries; ``copy`` numbers the duplicates of a
    ``duplicate`` fault; ``status`` is None when nothing answered (``error`` says why).
    """

    seq: int
    time: float
    job_id: str
    event: str
    url: str
    message_id: str
    attempt: int
    copy: int
    fault: str
    status: int | None
    error: str | None
    headers: dict[str, str]
    body: bytes

    @property
    def delivered(self) -> bool:
        return self.status is not None and 200 <= self.status < 300

    def json(self) -> Any:
        return orjson.loads(self.body)

    def to_json(self) -> dict[str, Any]:
        data = {f: getattr(self, f) for f in self.__dataclass_fields__}
        data["body"] = self.body.decode("utf-8", "replace")
        return data
