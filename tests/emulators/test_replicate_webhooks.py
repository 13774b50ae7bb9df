from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from typing import Any

import httpx
import pytest
from openai import InvalidWebhookSignatureError, OpenAI
from replicate.client import Client

from tests.emulators import Behaviour, ReplicateEmulator, create_replicate_app, serve
from tests.emulators.conftest import ManualClock
from tests.emulators.receiver import Receiver

TOKEN = {"Authorization": "Bearer test"}
BASE = "https://api.replicate.com"
MODEL_URL = "/v1/models/black-forest-labs/flux-schnell/predictions"


@pytest.fixture
async def rep(clock: ManualClock) -> AsyncIterator[tuple[httpx.AsyncClient, ReplicateEmulator]]:
    """An in-process emulator on a manual clock: 10 s starting, then a 2 s run of 20 steps."""
    behaviour = Behaviour(queue_time=10, latency=2, webhook_retry_delays=[0.01, 0.01])
    app = create_replicate_app(behaviour, clock=clock)
    state: ReplicateEmulator = app.state.emulator
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url=BASE, headers=TOKEN) as client:
        yield client, state
    await state.aclose()


async def create(client: httpx.AsyncClient, url: str = MODEL_URL, **body: Any) -> Any:
    response = await client.post(url, json={"input": {"prompt": "a cat"}, **body})
    assert response.status_code == 201, response.text
    return response.json()


async def secret_of(client: httpx.AsyncClient) -> str:
    response = await client.get("/v1/webhooks/default/secret")
    assert response.status_code == 200
    key: str = response.json()["key"]
    return key


def verifies(secret: str, headers: Mapping[str, str], body: bytes) -> bool:
    """Standard Webhooks, checked by the openai SDK's own verifier."""
    with OpenAI(api_key="unused", base_url="http://127.0.0.1:9/") as openai:
        try:
            openai.webhooks.verify_signature(body, dict(headers), secret=secret)
        except InvalidWebhookSignatureError:
            return False
    return True


async def test_prediction_posts_each_event_signed_with_the_account_secret(
    rep: tuple[httpx.AsyncClient, ReplicateEmulator],
    clock: ManualClock,
    receiver: tuple[Receiver, str],
) -> None:
    client, state = rep
    endpoint, url = receiver
    created = await create(client, webhook=url)
    clock.advance(30)
    await state.webhooks.flush()

    bodies = [r.json() for r in endpoint.received]
    # start, a logs event every 0.5 s of a 2 s run, the output, the end
    assert [b["status"] for b in bodies] == ["processing"] * 5 + ["succeeded"]
    assert [len(b["logs"].splitlines()) for b in bodies[:4]] == [2, 7, 12, 17]
    assert bodies[4]["output"] == bodies[5]["output"] and bodies[4]["completed_at"] is None
    assert bodies[5] == (await client.get(f"/v1/predictions/{created['id']}")).json()
    events = [a.event for a in state.webhooks.deliveries(created["id"])]
    assert events == ["start", "logs", "logs", "logs", "output", "completed"]

    secret = await secret_of(client)
    assert secret.startswith("whsec_")
    for delivery in endpoint.received:
        assert verifies(secret, delivery.headers, delivery.body)
    assert len({r.headers["webhook-id"] for r in endpoint.received}) == 6
    tampered = endpoint.received[-1].body.replace(b"succeeded", b"failed")
    assert not verifies(secret, endpoint.received[-1].headers, tampered)


async def test_events_filter_narrows_what_is_sent(
    rep: tuple[httpx.AsyncClient, ReplicateEmulator],
    clock: ManualClock,
    receiver: tuple[Receiver, str],
) -> None:
    client, state = rep
    _, url = receiver
    await create(client, webhook=url, webhook_events_filter=["completed"])
    await create(client, webhook=url, webhook_events_filter=["start", "completed"])
    clock.advance(30)
    await state.webhooks.flush()
    assert [a.event for a in state.webhooks.deliveries()] == ["completed", "start", "completed"]


async def test_failed_and_cancelled_predictions_complete_with_their_status(
    rep: tuple[httpx.AsyncClient, ReplicateEmulator],
    clock: ManualClock,
    receiver: tuple[Receiver, str],
) -> None:
    client, state = rep
    endpoint, url = receiver
    state.configure(fail_runs=True, run_error="boom")
    await create(client, webhook=url, webhook_events_filter=["completed"])
    state.configure(fail_runs=False)
    queued = await create(client, webhook=url, webhook_events_filter=["completed"])
    await client.post(f"/v1/predictions/{queued['id']}/cancel")
    await state.webhooks.flush()  # the cancel is delivered at once
    assert [(r.json()["status"], r.json()["error"]) for r in endpoint.received] == [
        ("canceled", None)
    ]
    clock.advance(30)
    await state.webhooks.flush()
    assert endpoint.received[1].json()["status"] == "failed"
    assert endpoint.received[1].json()["error"] == "boom"


async def test_only_the_completed_event_is_retried(
    rep: tuple[httpx.AsyncClient, ReplicateEmulator],
    clock: ManualClock,
    receiver: tuple[Receiver, str],
) -> None:
    client, state = rep
    endpoint, url = receiver
    endpoint.statuses.extend([500, 500, 503])  # start fails, then completed twice
    await create(client, webhook=url, webhook_events_filter=["start", "completed"])
    clock.advance(30)
    await state.webhooks.flush()
    attempts = [(a.event, a.attempt, a.status) for a in state.webhooks.deliveries()]
    assert attempts == [
        ("start", 0, 500),
        ("completed", 0, 500),
        ("completed", 1, 503),
        ("completed", 2, 200),
    ]
    ids = {r.headers["webhook-id"] for r in endpoint.received[1:]}
    assert len(ids) == 1  # a retry is the same message


@pytest.mark.parametrize(
    ("extra", "field"),
    [
        ({"webhook": "https://example.com/hook"}, "webhook"),
        ({"webhook": 7}, "webhook"),
        ({"webhook": "http://127.0.0.1/h", "webhook_events_filter": ["done"]}, "filter"),
        ({"webhook": "http://127.0.0.1/h", "webhook_events_filter": "completed"}, "filter"),
    ],
)
async def test_bad_webhook_fields_are_a_422_naming_the_field(
    rep: tuple[httpx.AsyncClient, ReplicateEmulator], extra: dict[str, Any], field: str
) -> None:
    client, state = rep
    response = await client.post(MODEL_URL, json={"input": {}, **extra})
    assert response.status_code == 422
    [invalid] = response.json()["invalid_fields"]
    expected = "webhook" if field == "webhook" else "webhook_events_filter"
    assert invalid["field"] == expected
    assert not state.predictions


async def test_secret_needs_a_token(rep: tuple[httpx.AsyncClient, ReplicateEmulator]) -> None:
    client, _ = rep
    response = await client.get("/v1/webhooks/default/secret", headers={"Authorization": ""})
    assert response.status_code == 401


async def test_early_fault_delivers_start_and_end_before_the_201(
    rep: tuple[httpx.AsyncClient, ReplicateEmulator], receiver: tuple[Receiver, str]
) -> None:
    client, state = rep
    endpoint, url = receiver
    state.script("webhook:completed", "early")
    created = await create(client, "/v1/deployments/acme/flux/predictions", webhook=url)
    statuses = [r.json()["status"] for r in endpoint.received]
    assert statuses == ["processing", "processing", "succeeded"]  # start, output, completed
    assert created["status"] == "succeeded"
    assert endpoint.received[-1].json()["id"] == created["id"]


async def test_late_fault_sends_start_after_completed(
    rep: tuple[httpx.AsyncClient, ReplicateEmulator],
    clock: ManualClock,
    receiver: tuple[Receiver, str],
) -> None:
    client, state = rep
    endpoint, url = receiver
    state.script("webhook:start", "late")
    await create(
        client,
        "/v1/predictions",
        version="owner/name:abc",
        webhook=url,
        webhook_events_filter=["start", "completed"],
    )
    clock.advance(30)
    await state.webhooks.flush()
    assert [r.json()["status"] for r in endpoint.received] == ["succeeded", "processing"]


async def test_replicate_client_passes_webhook_and_filter(
    receiver: tuple[Receiver, str],
) -> None:
    endpoint, url = receiver
    app = create_replicate_app(Behaviour(latency=0.05))
    async with serve(app) as base_url:
        client = Client(api_token="test", base_url=base_url)
        prediction = await client.models.predictions.async_create(
            model="black-forest-labs/flux-schnell",
            input={"prompt": "a cat"},
            webhook=url,
            webhook_events_filter=["completed"],
        )
        [delivery] = await endpoint.wait_for(1)
        secret = (await client._async_client.get("/v1/webhooks/default/secret")).json()["key"]
        await client._async_client.aclose()
    assert delivery.json()["id"] == prediction.id
    assert delivery.json()["status"] == "succeeded"
    assert verifies(secret, delivery.headers, delivery.body)
