"""Fair shares at the HTTP edge (gateway/edge_share.py): who is counted, and whose turn is
next. The protocol that holds and starts the requests is tested in tests/test_edge.py."""

from __future__ import annotations

from typing import Any

import pytest

from gateway.edge_share import KeyShares, Turn, caller_of


class FakeTurn(Turn):
    def __init__(self, name: str, log: list[str], gone: bool = False) -> None:
        self.name, self.log, self.is_gone = name, log, gone

    def gone(self) -> bool:
        return self.is_gone

    def start(self) -> None:
        self.log.append(self.name)


def scope(auth: bytes | None, path: str = "/v1/jobs/x", query: bytes = b"") -> Any:
    headers = [(b"host", b"x")] + ([] if auth is None else [(b"authorization", auth)])
    return {"type": "http", "path": path, "query_string": query, "headers": headers}


def test_a_caller_is_a_digest_of_its_authorization_header_never_the_header_itself() -> None:
    a = caller_of(scope(b"Bearer key-a"))
    assert a is not None and b"key-a" not in a and len(a) == 16
    assert caller_of(scope(b"Bearer key-a")) == a
    assert caller_of(scope(b"Bearer key-b")) not in (None, a)


@pytest.mark.parametrize(
    ("auth", "path", "query"),
    [
        (None, "/v1/jobs/x", b""),  # anonymous: the proxy's job
        (b"Bearer A", "/v1/jobs/x", b"wait=30"),  # a long-poll waits, it does not compute
        (b"Bearer A", "/v1/jobs/x/events", b""),
        (b"Bearer A", "/v1/images/generations", b""),
    ],
)
def test_anonymous_requests_and_long_waits_are_not_shared_out(
    auth: bytes | None, path: str, query: bytes
) -> None:
    assert caller_of(scope(auth, path, query)) is None


def test_past_its_share_a_caller_holds_and_its_oldest_held_request_gets_the_next_turn() -> None:
    shares, started = KeyShares(per_key=2), list[str]()
    assert shares.enter(b"a") and shares.enter(b"a")
    assert not shares.enter(b"a")
    shares.hold(b"a", FakeTurn("a2", started))
    assert not shares.enter(b"a")
    shares.hold(b"a", FakeTurn("a3", started))
    assert shares.enter(b"b")  # another caller is not behind a's queue
    shares.leave(b"a")
    assert started == ["a2"] and shares.running[b"a"] == 2  # handed over, still counted
    shares.leave(b"a")
    assert started == ["a2", "a3"] and b"a" not in shares.held
    for caller in (b"a", b"a", b"b"):
        shares.leave(caller)
    assert shares.running == {} and shares.held == {}


def test_a_held_request_whose_client_left_is_skipped_and_its_turn_passes_on() -> None:
    shares, started = KeyShares(per_key=1), list[str]()
    assert shares.enter(b"a")
    shares.hold(b"a", FakeTurn("gone", started, gone=True))
    shares.hold(b"a", FakeTurn("here", started))
    shares.leave(b"a")
    assert started == ["here"] and shares.running == {b"a": 1}
    shares.leave(b"a")
    assert shares.running == {} and shares.held == {}


def test_a_dropped_request_never_starts_and_a_forced_one_is_counted() -> None:
    shares, started = KeyShares(per_key=1), list[str]()
    assert shares.enter(b"a")
    lost, early = FakeTurn("lost", started), FakeTurn("early", started)
    shares.hold(b"a", lost)
    shares.hold(b"a", early)
    shares.drop(b"a", lost)  # its connection was lost
    shares.drop(b"a", early)  # started early (shutdown): counted over the share
    shares.force(b"a")
    shares.drop(b"a", early)  # dropping twice is harmless
    assert shares.running == {b"a": 2} and shares.held == {}
    shares.leave(b"a")
    shares.leave(b"a")
    assert started == [] and shares.running == {}
