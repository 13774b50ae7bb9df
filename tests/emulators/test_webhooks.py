"""The webhook dispatcher both emulators share: faults, redelivery, limits, controls."""

from __future__ import annotations

import asyncio
import socket
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.emulators import Behaviour, BehaviourError, FalEmulator, create_fal_app
from tests.emulators.conftest import ManualClock
from tests.emulators.receiver import Receiver, fal_signature_verifies
from tests.emulators.webhook_faults import WebhookFault
from tests.emulators.webhooks import WebhookTargetError, check_target

KEY = {"Authorization": "Key test"}
BASE = "https://queue.fal.run"
APP = "fal-ai/flux/dev"
REPO_ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
async def fal() -> AsyncIterator[FalEmulator]:
    """A fal emulator on the real clock (50 ms runs) with a fast retry schedule."""
    app = create_fal_app(Behaviour(latency=0.05, webhook_retry_delays=[0.01, 0.01]))
    state: FalEmulator = app.state.emulator
    yield state
    await state.aclose()


def submit(state: FalEmulator, url: str) -> str:
    return state.submit(APP, {"prompt": "a cat"}, webhook_url=url).request_id


async def test_drop_fault_loses_the_delivery_and_nothing_retries_it(
    fal: FalEmulator, receiver: tuple[Receiver, str]
) -> None:
    endpoint, url = receiver
    fal.script("webhook", "drop")
    request_id = submit(fal, url)
    await fal.webhooks.idle()
    assert endpoint.received == []
    [attempt] = fal.webhooks.deliveries(request_id)
    assert (attempt.fault, attempt.status, attempt.delivered) == ("drop", None, False)
    assert fal.result_of(fal.jobs[request_id])[0] == 200  # a poll still finds the result


async def test_delay_fault_sends_the_delivery_that_much_later(
    fal: FalEmulator, receiver: tuple[Receiver, str]
) -> None:
    endpoint, url = receiver
    fal.script("webhook", {"kind": "delay", "seconds": 0.3})
    started = time.monotonic()
    request_id = submit(fal, url)
    [delivery] = await endpoint.wait_for(1)
    assert time.monotonic() - started >= 0.35  # the 50 ms run, then the delay
    assert delivery.json()["request_id"] == request_id


@pytest.mark.parametrize("seconds", [0, 0.02])
async def test_duplicate_fault_redelivers_the_same_body_each_signed(
    fal: FalEmulator, receiver: tuple[Receiver, str], seconds: float
) -> None:
    endpoint, url = receiver
    fal.script("webhook", {"kind": "duplicate", "times": 3, "seconds": seconds})
    submit(fal, url)
    deliveries = await endpoint.wait_for(4)
    await fal.webhooks.idle()
    assert len(endpoint.received) == 4
    assert len({d.body for d in deliveries}) == 1
    jwks = fal.signer.jwks()
    assert all(fal_signature_verifies(jwks, d.headers, d.body) for d in deliveries)
    assert sorted(a.copy for a in fal.webhooks.deliveries()) == [0, 1, 2, 3]


async def test_bad_signature_fault_never_verifies_and_is_retried_while_refused(
    fal: FalEmulator, receiver: tuple[Receiver, str]
) -> None:
    endpoint, url = receiver
    endpoint.statuses.extend([401, 401, 401])
    fal.script("webhook", "bad_signature")
    submit(fal, url)
    await fal.webhooks.idle()
    jwks = fal.signer.jwks()
    assert len(endpoint.received) == 3  # the first try and both retries
    assert not any(fal_signature_verifies(jwks, d.headers, d.body) for d in endpoint.received)
    submit(fal, url)  # the next delivery is genuine again
    [*_, genuine] = await endpoint.wait_for(4)
    assert fal_signature_verifies(jwks, genuine.headers, genuine.body)


async def test_stale_fault_signs_with_an_old_timestamp(
    fal: FalEmulator, receiver: tuple[Receiver, str]
) -> None:
    endpoint, url = receiver
    fal.script("webhook", "stale")
    submit(fal, url)
    [delivery] = await endpoint.wait_for(1)
    age = time.time() - int(delivery.headers["x-fal-webhook-timestamp"])
    assert 595 <= age <= 605
    assert fal_signature_verifies(fal.signer.jwks(), delivery.headers, delivery.body)


async def test_non_2xx_answers_are_redelivered_until_one_is_accepted(
    fal: FalEmulator, receiver: tuple[Receiver, str]
) -> None:
    endpoint, url = receiver
    endpoint.statuses.extend([500, 404])
    request_id = submit(fal, url)
    await endpoint.wait_for(3)
    await fal.webhooks.idle()
    attempts = fal.webhooks.deliveries(request_id)
    assert [(a.attempt, a.status) for a in attempts] == [(0, 500), (1, 404), (2, 200)]
    assert len({d.body for d in endpoint.received}) == 1


async def test_redelivery_stops_when_the_schedule_runs_out(
    fal: FalEmulator, receiver: tuple[Receiver, str]
) -> None:
    endpoint, url = receiver
    endpoint.statuses.extend([503] * 10)
    submit(fal, url)
    await fal.webhooks.idle()
    assert [d.status for d in endpoint.received] == [503, 503, 503]


async def test_unreachable_or_slow_receivers_are_retried(
    fal: FalEmulator, receiver: tuple[Receiver, str]
) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        closed = f"http://127.0.0.1:{probe.getsockname()[1]}/hook"
    unreachable = submit(fal, closed)
    await fal.webhooks.idle()
    attempts = fal.webhooks.deliveries(unreachable)
    assert [a.status for a in attempts] == [None, None, None]
    assert all(a.error and "Connect" in a.error for a in attempts)

    endpoint, url = receiver
    endpoint.hang = 0.3
    fal.configure(webhook_timeout=0.05, webhook_retry_delays=[0.01])
    slow = submit(fal, url)
    await fal.webhooks.idle()
    attempts = fal.webhooks.deliveries(slow)
    assert [a.status for a in attempts] == [None, None]
    assert all(a.error and "Timeout" in a.error for a in attempts)


async def test_a_fault_for_one_event_is_taken_before_a_general_one(
    fal: FalEmulator, receiver: tuple[Receiver, str]
) -> None:
    endpoint, url = receiver
    fal.script("webhook", "drop")
    fal.script("webhook:completed", {"kind": "duplicate", "times": 1})
    first = submit(fal, url)
    await fal.webhooks.idle()
    second = submit(fal, url)
    await fal.webhooks.idle()
    assert [d.json()["request_id"] for d in endpoint.received] == [first, first]
    assert [a.fault for a in fal.webhooks.deliveries(second)] == ["drop"]


async def test_many_jobs_each_get_their_delivery(
    fal: FalEmulator, receiver: tuple[Receiver, str]
) -> None:
    endpoint, url = receiver
    ids = {submit(fal, url) for _ in range(200)}
    await endpoint.wait_for(200)
    assert {d.json()["request_id"] for d in endpoint.received} == ids


async def test_a_transport_can_stand_in_for_the_network() -> None:
    endpoint = Receiver()
    app = create_fal_app(
        Behaviour(latency=0.01), webhook_transport=httpx.ASGITransport(app=endpoint.app)
    )
    state: FalEmulator = app.state.emulator
    request_id = submit(state, "http://127.0.0.1/hooks/fal")
    [delivery] = await endpoint.wait_for(1)
    await state.aclose()
    assert delivery.path == "/hooks/fal" and delivery.json()["request_id"] == request_id


async def test_reset_forgets_pending_deliveries(
    clock: ManualClock, receiver: tuple[Receiver, str]
) -> None:
    endpoint, url = receiver
    app = create_fal_app(Behaviour(latency=10), clock=clock)
    state: FalEmulator = app.state.emulator
    submit(state, url)
    state.reset()
    clock.advance(60)
    await state.webhooks.flush()
    await state.aclose()
    assert endpoint.received == [] and state.webhooks.pending == 0


@pytest.mark.parametrize(
    "url",
    ["http://127.0.0.1:8/h", "http://127.9.9.9/h", "https://localhost/h", "http://[::1]:80/h"],
)
def test_loopback_targets_are_accepted(url: str) -> None:
    assert check_target(url) == url


@pytest.mark.parametrize(
    "url",
    [
        "http://example.com/h",
        "http://localhost.example.com/h",
        "http://192.168.1.4/h",
        "http://0.0.0.0/h",
        "file:///etc/passwd",
        "not a url",
        None,
    ],
)
def test_other_targets_are_refused(url: Any) -> None:
    with pytest.raises(WebhookTargetError):
        check_target(url)


@pytest.mark.parametrize(
    "spec",
    [
        "explode",
        5,
        {"kind": "drop", "seconds": 1},
        {"kind": "delay", "seconds": -1},
        {"kind": "duplicate", "times": 0},
        {"kind": "delay", "times": 2},
        {"kind": "drop", "when": "now"},
    ],
)
def test_nonsense_faults_are_refused(spec: Any) -> None:
    with pytest.raises(BehaviourError):
        Behaviour().add_script("webhook", spec)
    assert WebhookFault.parse({"kind": "delay"}).seconds == 1.0


async def test_http_controls_for_webhooks(receiver: tuple[Receiver, str]) -> None:
    endpoint, url = receiver
    app = create_fal_app(Behaviour(latency=0.01))
    state: FalEmulator = app.state.emulator
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url=BASE, headers=KEY) as client:
        changed = await client.post(
            "/_emulator/behaviour", json={"webhook_retry_delays": [0.01], "webhook_timeout": 2}
        )
        assert changed.json()["webhook_retry_delays"] == [0.01]
        for bad in ({"webhook_timeout": 0}, {"webhook_retry_delays": "1"}):
            assert (await client.post("/_emulator/behaviour", json=bad)).status_code == 400
        scripted = await client.post(
            "/_emulator/script",
            json={"route": "webhook", "responses": ["ok", {"kind": "delay", "seconds": 0.5}]},
        )
        assert scripted.json()["scripts"]["webhook"] == [
            {"kind": "ok"},
            {"kind": "delay", "seconds": 0.5},
        ]
        refused = await client.post(
            "/_emulator/script", json={"route": "webhook:start", "responses": ["boom"]}
        )
        assert refused.status_code == 400

        endpoint.statuses.append(500)
        submitted = await client.post(APP, params={"fal_webhook": url}, json={"prompt": "a"})
        request_id = submitted.json()["request_id"]
        await state.webhooks.idle()
        log = (await client.get("/_emulator/webhooks", params={"job": request_id})).json()
        assert [(d["attempt"], d["status"]) for d in log["deliveries"]] == [(0, 500), (1, 200)]
        assert log["deliveries"][0]["headers"]["x-fal-webhook-request-id"] == request_id
        assert log["pending"] == 0

        await client.post("/_emulator/reset")
        assert (await client.get("/_emulator/webhooks")).json()["deliveries"] == []
        assert state.behaviour.webhook_faults == {}
    await state.aclose()


async def test_an_emulator_process_delivers_webhooks(receiver: tuple[Receiver, str]) -> None:
    endpoint, url = receiver
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        *("-m", "tests.emulators", "fal", "--port", str(port), "--latency", "0.05"),
        cwd=REPO_ROOT,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.DEVNULL,
    )
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", headers=KEY) as client:
            for _ in range(200):
                try:
                    if (await client.get("/_emulator/health")).status_code == 200:
                        break
                except httpx.TransportError:
                    await asyncio.sleep(0.05)
            submitted = await client.post(APP, params={"fal_webhook": url}, json={"prompt": "a"})
            [delivery] = await endpoint.wait_for(1)
            jwks = (await client.get("/.well-known/jwks.json")).json()
    finally:
        process.terminate()
        await process.wait()
    assert delivery.json()["request_id"] == submitted.json()["request_id"]
    assert fal_signature_verifies(jwks, delivery.headers, delivery.body)
