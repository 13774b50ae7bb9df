"""Replicate's webhooks as the provider receives them: deliveries signed by the real emulator
(tests/emulators) with Standard Webhooks, verified and read into the state the poll reads."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from urllib.parse import parse_qsl

import orjson
import pytest

from gateway.errors import (
    ConfigError,
    InvalidRequest,
    ProviderUnavailable,
    ServiceUnavailable,
    WebhookRejected,
)
from providers.base import ProviderRef, ProviderState, RouteSpec, StateKind, WebhookDelivery
from providers.replicate import ReplicateProvider
from providers.replicate_webhooks import ReplicateWebhooks
from tests.emulators import Behaviour, ReplicateEmulator, create_replicate_app, serve
from tests.emulators.receiver import Received, Receiver
from tests.emulators.replicate_webhooks import StandardWebhooksSigner

TOKEN = "r8_test"
ROUTE = RouteSpec("replicate", "black-forest-labs/flux-schnell")


@dataclass
class Rig:
    provider: ReplicateProvider
    emulator: ReplicateEmulator
    receiver: Receiver
    api_url: str

    async def submit(self, job_id: str = "job-1", kind: str = "image") -> ProviderRef:
        return await self.provider.submit(ROUTE, {"prompt": "a fox"}, job_id=job_id, kind=kind)

    async def delivered(self, count: int = 1) -> list[Received]:
        return await self.receiver.wait_for(count)

    async def parse(self, received: Received) -> WebhookDelivery:
        query = dict(parse_qsl(received.query))
        return await self.provider.parse_webhook(received.headers, received.body, query)


@pytest.fixture
async def rig() -> AsyncIterator[Rig]:
    receiver = Receiver()
    app = create_replicate_app(Behaviour(latency=0.05, webhook_retry_delays=[]))
    emulator: ReplicateEmulator = app.state.emulator
    async with serve(receiver.app) as gateway_url, serve(app) as api_url:
        provider = ReplicateProvider(token=TOKEN, base_url=api_url, webhook_base_url=gateway_url)
        yield Rig(provider, emulator, receiver, api_url)
        await provider.aclose()
        await emulator.aclose()


def rotate(signer: StandardWebhooksSigner) -> None:
    """The account's secret changes (the emulator's signer takes a fresh key)."""
    fresh = StandardWebhooksSigner()
    signer._key, signer.secret = fresh._key, fresh.secret


async def no_fetch() -> str:
    raise ProviderUnavailable("the secret must not be fetched")


# -- a delivery reads as the poll reads ----------------------------------------------------


async def test_a_finished_prediction_is_delivered_once_as_the_state_its_poll_reads(
    rig: Rig,
) -> None:
    ref = await rig.submit("job-3", kind="image")
    [received] = await rig.delivered()
    assert received.path == "/v1/provider_webhooks/replicate"

    delivery = await rig.parse(received)

    assert (delivery.request_id, delivery.job_id, delivery.event) == (
        ref.request_id,
        "job-3",
        "completed",
    )
    assert delivery.delivery_id == received.headers["webhook-id"]
    polled = await rig.provider.poll(ROUTE, ref)
    assert polled.kind is StateKind.SUCCEEDED and polled.outputs
    assert delivery.state == polled
    [create] = rig.emulator.requests("submit")
    assert create.body["webhook_events_filter"] == ["completed"]  # no start, logs, output


@pytest.mark.parametrize(
    ("run_error", "error_class"),
    [
        ("CUDA out of memory", "ProviderUnavailable"),
        ("invalid input: prompt", "ProviderInputError"),
    ],
)
async def test_a_failed_prediction_is_delivered_classified_as_its_poll_classifies_it(
    rig: Rig, run_error: str, error_class: str
) -> None:
    rig.emulator.configure(fail_runs=True, run_error=run_error)
    ref = await rig.submit()
    [received] = await rig.delivered()

    delivery = await rig.parse(received)

    polled = await rig.provider.poll(ROUTE, ref)
    assert delivery.state is not None and delivery.state.kind is StateKind.FAILED
    assert type(delivery.state.error).__name__ == type(polled.error).__name__ == error_class
    assert delivery.state.error is not None and polled.error is not None
    assert delivery.state.error.message == polled.error.message


async def test_a_cancelled_prediction_is_delivered_cancelled(rig: Rig) -> None:
    rig.emulator.configure(queue_time=30)
    ref = await rig.submit()
    await rig.provider.cancel(ROUTE, ref)
    [received] = await rig.delivered()
    assert (await rig.parse(received)).state == ProviderState(StateKind.CANCELLED)


async def test_without_webhooks_a_create_names_no_callback(rig: Rig) -> None:
    plain = ReplicateProvider(token=TOKEN, base_url=rig.api_url)
    try:
        await plain.submit(ROUTE, {"prompt": "a fox"}, job_id="job-1", kind="image")
    finally:
        await plain.aclose()
    await rig.submit("job-2", kind="video")
    without, with_hooks = (r.body for r in rig.emulator.requests("submit"))
    assert "webhook" not in without and "webhook_events_filter" not in without
    gateway = rig.provider.webhook_base_url
    assert with_hooks["webhook"] == f"{gateway}/v1/provider_webhooks/replicate?job=job-2&kind=video"


# -- what does not verify is refused ----------------------------------------------------------


@pytest.mark.parametrize("fault", ["bad_signature", {"kind": "stale", "seconds": 600}])
async def test_a_forged_or_replayed_delivery_is_rejected(rig: Rig, fault: object) -> None:
    rig.emulator.script("webhook", fault)
    await rig.submit()
    [received] = await rig.delivered()
    with pytest.raises(WebhookRejected) as raised:
        await rig.parse(received)
    assert raised.value.status_code == 401


async def test_a_delivery_changed_after_signing_is_rejected(rig: Rig) -> None:
    await rig.submit()
    [received] = await rig.delivered()
    await rig.parse(received)  # as sent, it verifies
    changed = received.body.replace(b'"succeeded"', b'"failed"')
    assert changed != received.body
    with pytest.raises(WebhookRejected):
        await rig.provider.parse_webhook(received.headers, changed)
    other_id = received.headers | {"webhook-id": "msg_someone_else"}
    with pytest.raises(WebhookRejected):
        await rig.provider.parse_webhook(other_id, received.body)


async def test_one_matching_signature_among_several_is_enough(rig: Rig) -> None:
    """While a secret rotates, a delivery carries a signature under each."""
    await rig.submit()
    [received] = await rig.delivered()
    headers = dict(received.headers)
    headers["webhook-signature"] = "v1,AAAA v2,zzz " + headers["webhook-signature"]
    assert (await rig.provider.parse_webhook(headers, received.body)).state is not None


# -- the secret ------------------------------------------------------------------------------


async def test_a_configured_secret_verifies_without_asking_replicate(rig: Rig) -> None:
    verifier = ReplicateWebhooks(secret=rig.emulator.signer.secret, fetch_secret=no_fetch)
    await rig.submit()
    [received] = await rig.delivered()
    delivery = await verifier.parse(received.headers, received.body, {})
    assert delivery.state is not None and delivery.state.kind is StateKind.SUCCEEDED
    wrong = ReplicateWebhooks(secret=StandardWebhooksSigner().secret, fetch_secret=no_fetch)
    with pytest.raises(WebhookRejected):
        await wrong.parse(received.headers, received.body, {})


@pytest.mark.parametrize("secret", ["whsec_not base64!", "whsec_"])
def test_a_malformed_configured_secret_is_a_config_error(secret: str) -> None:
    with pytest.raises(ConfigError, match="REPLICATE_WEBHOOK_SECRET"):
        ReplicateWebhooks(secret=secret, fetch_secret=no_fetch)


async def test_a_changed_account_secret_is_read_again_once(rig: Rig) -> None:
    fetched: list[str] = []

    async def fetch() -> str:
        fetched.append(rig.emulator.signer.secret)
        return rig.emulator.signer.secret

    verifier = ReplicateWebhooks(secret=None, fetch_secret=fetch, refetch_floor=0)
    await rig.submit("job-1")
    [first] = await rig.delivered(1)
    await verifier.parse(first.headers, first.body, {})
    rotate(rig.emulator.signer)
    await rig.submit("job-2")
    [_, second] = await rig.delivered(2)

    await verifier.parse(second.headers, second.body, {})

    assert len(fetched) == 2 and fetched[0] != fetched[1]


async def test_a_secret_that_cannot_be_read_is_a_503(rig: Rig) -> None:
    await rig.submit()
    [received] = await rig.delivered()
    tokenless = ReplicateProvider(token=None, base_url=rig.api_url)
    with pytest.raises(ServiceUnavailable):
        await tokenless.parse_webhook(received.headers, received.body)


def prediction(status: str, **fields: object) -> bytes:
    body = {
        "id": "p1",
        "model": "o/n",
        "version": "v1",
        "status": status,
        "input": {"prompt": "a red fox"},
        "logs": "",
        "output": None,
        "error": None,
        "metrics": {},
        "created_at": "2025-01-01T00:00:00.000Z",
        "urls": {},
    }
    return orjson.dumps(body | fields)


@pytest.mark.parametrize(
    ("body", "event", "state"),
    [
        (prediction("starting"), "starting", ProviderState(StateKind.QUEUED)),
        (
            prediction("processing", logs=" 40%|####      | 4/10"),
            "processing",
            ProviderState(StateKind.RUNNING, progress=40),
        ),
        (prediction("aborted"), "completed", ProviderState(StateKind.CANCELLED)),
    ],
)
async def test_deliveries_of_other_events_read_as_the_poll_would(
    body: bytes, event: str, state: ProviderState
) -> None:
    signer = StandardWebhooksSigner()
    headers = signer.headers("msg_1", body, int(time.time()))
    verifier = ReplicateWebhooks(secret=signer.secret, fetch_secret=no_fetch)
    delivery = await verifier.parse(headers, body, {})
    assert (delivery.request_id, delivery.event, delivery.state) == ("p1", event, state)


async def test_a_signed_body_that_is_no_prediction_is_a_400() -> None:
    signer = StandardWebhooksSigner()
    verifier = ReplicateWebhooks(secret=signer.secret, fetch_secret=no_fetch)
    for body in (b"[]", b'{"id": "p1", "status": "starting"}'):
        headers = signer.headers("msg_1", body, int(time.time()))
        with pytest.raises(InvalidRequest) as raised:
            await verifier.parse(headers, body, {})
        assert raised.value.status_code == 400
