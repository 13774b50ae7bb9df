from __future__ import annotations

import time
from collections.abc import AsyncIterator
from typing import Any

import fal_client
import fal_client.client
import httpx
import pytest

from tests.emulators import Behaviour, FalEmulator, create_fal_app, serve
from tests.emulators.conftest import ManualClock
from tests.emulators.receiver import Receiver, fal_signature_verifies

KEY = {"Authorization": "Key test"}
BASE = "https://queue.fal.run"
FAST_RETRIES = [0.01, 0.01, 0.01]


@pytest.fixture
async def fal() -> AsyncIterator[tuple[httpx.AsyncClient, FalEmulator]]:
    """An in-process fal emulator on the real clock: each request runs 50 ms."""
    app = create_fal_app(Behaviour(latency=0.05, webhook_retry_delays=FAST_RETRIES))
    state: FalEmulator = app.state.emulator
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url=BASE, headers=KEY) as client:
        yield client, state
    await state.aclose()


async def submit(client: httpx.AsyncClient, webhook: str, body: Any = None) -> Any:
    response = await client.post(
        "/fal-ai/flux/dev",
        params={"fal_webhook": webhook},
        json={"prompt": "a cat"} if body is None else body,
    )
    assert response.status_code == 200, response.text
    return response.json()


async def jwks_of(client: httpx.AsyncClient) -> dict[str, Any]:
    response = await client.get("/.well-known/jwks.json", headers={"Authorization": ""})
    assert response.status_code == 200
    jwks: dict[str, Any] = response.json()
    return jwks


async def test_finished_request_posts_its_result_signed_with_the_jwks_key(
    fal: tuple[httpx.AsyncClient, FalEmulator], receiver: tuple[Receiver, str]
) -> None:
    client, _ = fal
    endpoint, url = receiver
    submitted = await submit(client, f"{url}?job=42")
    [delivery] = await endpoint.wait_for(1)

    assert delivery.query == "job=42"
    assert delivery.headers["content-type"] == "application/json"
    result = await client.get(submitted["response_url"])
    assert delivery.json() == {
        "request_id": submitted["request_id"],
        "gateway_request_id": submitted["request_id"],
        "status": "OK",
        "payload": result.json(),
        "error": None,
    }
    assert delivery.headers["x-fal-webhook-request-id"] == submitted["request_id"]
    assert abs(int(delivery.headers["x-fal-webhook-timestamp"]) - time.time()) < 5
    jwks = await jwks_of(client)
    assert fal_signature_verifies(jwks, delivery.headers, delivery.body)
    assert not fal_signature_verifies(jwks, delivery.headers, delivery.body.replace(b"OK", b"KO"))


async def test_failed_run_posts_an_error_with_the_error_body(
    fal: tuple[httpx.AsyncClient, FalEmulator], receiver: tuple[Receiver, str]
) -> None:
    client, state = fal
    endpoint, url = receiver
    state.configure(fail_runs=True, run_error="CUDA out of memory", run_error_status=500)
    submitted = await submit(client, url)
    [delivery] = await endpoint.wait_for(1)

    body = delivery.json()
    assert (body["status"], body["error"]) == ("ERROR", "Invalid status code: 500")
    assert body["payload"] == (await client.get(submitted["response_url"])).json()
    assert body["payload"]["detail"] == "CUDA out of memory"
    assert fal_signature_verifies(await jwks_of(client), delivery.headers, delivery.body)


async def test_cancelled_request_posts_its_end_when_cancelled(
    clock: ManualClock, receiver: tuple[Receiver, str]
) -> None:
    endpoint, url = receiver
    app = create_fal_app(Behaviour(queue_time=60, latency=10), clock=clock)
    state: FalEmulator = app.state.emulator
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url=BASE, headers=KEY) as client:
        submitted = await submit(client, url)
        await state.webhooks.flush()
        assert endpoint.received == []  # still queued: nothing to say
        cancelled = await client.put(submitted["cancel_url"])
        assert cancelled.status_code == 202
        await state.webhooks.flush()
    await state.aclose()
    [delivery] = endpoint.received
    body = delivery.json()
    assert (body["status"], body["error"]) == ("ERROR", "Invalid status code: 400")
    assert body["payload"]["error_type"] == "request_cancelled"


async def test_webhook_waits_for_the_end_on_the_emulator_clock(
    clock: ManualClock, receiver: tuple[Receiver, str]
) -> None:
    endpoint, url = receiver
    app = create_fal_app(Behaviour(queue_time=5, latency=10), clock=clock)
    state: FalEmulator = app.state.emulator
    state.submit("fal-ai/flux/dev", {"prompt": "a cat"}, webhook_url=url)
    clock.advance(14.9)
    await state.webhooks.flush()
    assert endpoint.received == [] and state.webhooks.pending == 1
    clock.advance(0.1)
    await state.webhooks.flush()
    assert [r.json()["status"] for r in endpoint.received] == ["OK"]
    assert state.webhooks.pending == 0
    await state.aclose()


@pytest.mark.parametrize(
    "webhook",
    ["http://example.com/hook", "http://10.0.0.8/hook", "ftp://127.0.0.1/hook", "/hook", ""],
)
async def test_webhook_off_the_loopback_is_a_422_naming_the_parameter(
    fal: tuple[httpx.AsyncClient, FalEmulator], webhook: str
) -> None:
    client, state = fal
    response = await client.post(
        "/fal-ai/flux/dev", params={"fal_webhook": webhook}, json={"prompt": "a"}
    )
    assert response.status_code == 422
    [detail] = response.json()["detail"]
    assert detail["loc"] == ["query", "fal_webhook"]
    assert not state.jobs and state.submit_count() == 0


async def test_early_fault_delivers_the_end_before_the_submit_answers(
    fal: tuple[httpx.AsyncClient, FalEmulator], receiver: tuple[Receiver, str]
) -> None:
    client, state = fal
    endpoint, url = receiver
    state.configure(queue_time=30, latency=30)
    state.script("webhook", "early")
    submitted = await submit(client, url)
    # the delivery was in before the submit's answer came back, and it was the end
    [delivery] = endpoint.received
    assert delivery.json()["request_id"] == submitted["request_id"]
    assert delivery.json()["status"] == "OK"
    assert submitted["queue_position"] == 0
    status = await client.get(submitted["status_url"])
    assert status.json()["status"] == "COMPLETED"
    assert fal_signature_verifies(await jwks_of(client), delivery.headers, delivery.body)


async def test_fal_client_webhook_url_reaches_the_receiver(
    monkeypatch: pytest.MonkeyPatch, receiver: tuple[Receiver, str]
) -> None:
    endpoint, url = receiver
    app = create_fal_app(Behaviour(latency=0.05))
    async with serve(app) as base_url:
        monkeypatch.setattr(fal_client.client, "QUEUE_URL_FORMAT", f"{base_url}/")
        sdk = fal_client.AsyncClient(key="test")
        handle = await sdk.submit("fal-ai/flux/dev", {"prompt": "a cat"}, webhook_url=url)
        [delivery] = await endpoint.wait_for(1)
        await (await sdk._client).aclose()
        async with httpx.AsyncClient(base_url=base_url) as plain:
            jwks = await jwks_of(plain)
    assert delivery.json()["request_id"] == handle.request_id
    assert fal_signature_verifies(jwks, delivery.headers, delivery.body)


async def test_request_that_never_started_in_time_posts_a_timeout_error(
    clock: ManualClock, receiver: tuple[Receiver, str]
) -> None:
    endpoint, url = receiver
    app = create_fal_app(Behaviour(queue_time=60, latency=10), clock=clock)
    state: FalEmulator = app.state.emulator
    state.submit("fal-ai/flux/dev", {"prompt": "a"}, start_timeout=5, webhook_url=url)
    clock.advance(5)
    await state.webhooks.flush()
    await state.aclose()
    [delivery] = endpoint.received
    body = delivery.json()
    assert (body["status"], body["error"]) == ("ERROR", "Invalid status code: 504")
    assert body["payload"]["error_type"] == "request_timeout"
