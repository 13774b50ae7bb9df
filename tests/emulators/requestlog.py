"""The log of every request an emulator received, and submissions counted per app/model."""

from __future__ import annotations

from collections import Counter, deque
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from starlette.requests import Request

if TYPE_CHECKING:
    from tests.emulators.behaviour import Scripted

_LOGGED_HEADERS = frozenset(
    {"authorization", "prefer", "idempotency-key", "cancel-after", "user-agent", "content-type"}
)


@dataclass(frozen=True)
class LoggedRequest:
    """One request the emulator received, with what it answered."""

    seq: int
    time: float
    method: str
    path: str
    query: str
    route: str
    app: str | None
    headers: dict[str, str]
    body: Any
    status: int
    request_id: str | None
    scripted: str | None

    def to_json(self) -> dict[str, Any]:
        return {f: getattr(self, f) for f in self.__dataclass_fields__}


class RequestLog:
    """Every request received (the last ``limit``), and submissions counted per app/model."""

    def __init__(self, limit: int = 100_000) -> None:
        self._entries: deque[LoggedRequest] = deque(maxlen=limit)
        self._seq = 0
        self.submits_received: Counter[str] = Counter()
        self.submits_accepted: Counter[str] = Counter()

    def record(
        self,
        request: Request,
        *,
        route: str,
        status: int,
        received_at: float,
        app: str | None = None,
        body: Any = None,
        request_id: str | None = None,
        scripted: Scripted | None = None,
    ) -> LoggedRequest:
        self._seq += 1
        entry = LoggedRequest(
            seq=self._seq,
            time=received_at,
            method=request.method,
            path=request.scope["path"],
            query=request.scope["query_string"].decode("latin-1"),
            route=route,
            app=app,
            headers=headers_of_interest(request),
            body=body,
            status=status,
            request_id=request_id,
            scripted=None if scripted is None else scripted.kind,
        )
        self._entries.append(entry)
        return entry

    def entries(self, route: str | None = None, app: str | None = None) -> list[LoggedRequest]:
        return [
            e
            for e in self._entries
            if (route is None or e.route == route) and (app is None or e.app == app)
        ]

    def submit_count(self, app: str | None = None, *, accepted_only: bool = True) -> int:
        counter = self.submits_accepted if accepted_only else self.submits_received
        return sum(counter.values()) if app is None else counter[app]

    def clear(self) -> None:
        self._entries.clear()
        self.submits_received.clear()
        self.submits_accepted.clear()


def headers_of_interest(request: Request) -> dict[str, str]:
    return {
        name: value
        for name, value in request.headers.items()
        if name.startswith("x-") or name in _LOGGED_HEADERS
    }
