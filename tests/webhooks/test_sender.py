"""One webhook attempt (signing, pinning, no redirects, timeouts) and the retry schedule."""

from __future__ import annotations

import socket

import pytest

from gateway.netguard import AllowList
from gateway.webhooks.sender import Backoff, Sender
from gateway.webhooks.signing import new_secret
from tests.webhooks.support import receiving, verify_standard_webhook

LOOPBACK = AllowList.parse("127.0.0.1")
BODY = b'{"type":"job.completed","timestamp":1,"data":{"id":"job-1","prompt":"\xc3\xbc"}}'


async def test_a_delivery_verifies_with_an_independent_standard_webhooks_verifier() -> None:
    secret = new_secret()
    sender = Sender(LOOPBACK, 5.0)
    try:
        async with receiving() as receiver:
            outcome = await sender.send(receiver.url, "msg_abc", BODY, secret, 1_800_000_000)
    finally:
        await sender.aclose()

    assert (outcome.delivered, outcome.status_code, outcome.error) == (True, 200, None)
    [got] = receiver.received
    assert got.body == BODY
    assert got.headers["webhook-id"] == "msg_abc"
    assert got.headers["webhook-timestamp"] == "1800000000"
    assert got.headers["webhook-signature"].startswith("v1,")
    assert got.headers["content-type"] == "application/json"
    assert got.headers["host"] == receiver.base_url.removeprefix("http://")
    assert verify_standard_webhook(secret, got.headers, got.body, now=1_800_000_100)
    assert not verify_standard_webhook(secret, got.headers, got.body + b" ", now=1_800_000_100)
    assert not verify_standard_webhook(new_secret(), got.headers, got.body, now=1_800_000_100)
    assert not verify_standard_webhook(secret, got.headers, got.body, now=1_800_001_000)


async def test_an_error_answer_is_not_a_delivery() -> None:
    sender = Sender(LOOPBACK, 5.0)
    try:
        async with receiving([500, 404]) as receiver:
            first = await sender.send(receiver.url, "msg_1", BODY, new_secret(), 1)
            second = await sender.send(receiver.url, "msg_1", BODY, new_secret(), 1)
    finally:
        await sender.aclose()

    assert (first.delivered, first.status_code, first.permanent) == (False, 500, False)
    assert (second.delivered, second.status_code) == (False, 404)
    assert first.error and second.error


async def test_redirects_are_not_followed() -> None:
    sender = Sender(LOOPBACK, 5.0)
    try:
        async with receiving([307]) as receiver:
            outcome = await sender.send(receiver.url, "msg_1", BODY, new_secret(), 1)
    finally:
        await sender.aclose()

    assert (outcome.delivered, outcome.status_code) == (False, 307)
    assert [r.path for r in receiver.received] == ["/hook"]


async def test_a_slow_receiver_times_out() -> None:
    sender = Sender(LOOPBACK, 0.2)
    try:
        async with receiving(delay=2.0) as receiver:
            outcome = await sender.send(receiver.url, "msg_1", BODY, new_secret(), 1)
    finally:
        await sender.aclose()

    assert (outcome.delivered, outcome.status_code, outcome.permanent) == (False, None, False)
    assert outcome.error


async def test_a_refused_connection_is_worth_a_retry() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # nothing listens on it
    sender = Sender(LOOPBACK, 2.0)
    try:
        outcome = await sender.send(f"http://127.0.0.1:{port}/hook", "m", BODY, new_secret(), 1)
    finally:
        await sender.aclose()

    assert (outcome.delivered, outcome.permanent) == (False, False)
    assert outcome.error


async def test_a_target_no_longer_allowed_is_refused_at_send_time_for_good() -> None:
    sender = Sender(AllowList(), 5.0)
    try:
        async with receiving() as receiver:
            outcome = await sender.send(receiver.url, "msg_1", BODY, new_secret(), 1)
    finally:
        await sender.aclose()

    assert (outcome.delivered, outcome.permanent) == (False, True)
    assert receiver.received == []


def test_backoff_doubles_up_to_its_cap_with_bounded_jitter() -> None:
    backoff = Backoff(base=5.0, cap=600.0, window=3600.0, jitter=0.2)

    assert [backoff.delay(n, rng=lambda: 0.5) for n in (1, 2, 3, 4)] == [5.0, 10.0, 20.0, 40.0]
    assert backoff.delay(8, rng=lambda: 0.5) == 600.0
    assert backoff.delay(500, rng=lambda: 0.5) == 600.0
    assert backoff.delay(1, rng=lambda: 0.0) == pytest.approx(4.0)
    assert backoff.delay(1, rng=lambda: 1.0) == pytest.approx(6.0)


def test_backoff_gives_up_once_the_window_has_passed() -> None:
    backoff = Backoff(base=5.0, cap=600.0, window=3600.0, jitter=0.0)

    assert backoff.next_attempt(1, created_at=0.0, now=100.0) == 105.0
    assert backoff.next_attempt(9, created_at=0.0, now=3001.0) is None  # 3001 + 600 > 3600
    assert backoff.next_attempt(9, created_at=0.0, now=2999.0) == 3599.0
