"""fal's webhooks as the provider receives them: signed deliveries from the real emulator
(tests/emulators), verified against its JWKS and read into the state the poll reads."""

from __future__ import annotations

import asyncio
import dataclasses
import threading
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl

import httpx
import pytest

from gateway.errors import ServiceUnavailable, WebhookRejected
from providers.base import ProviderRef, ProviderState, RouteSpec, StateKind, WebhookDelivery
from providers.fal import FalProvider
from providers.fal_webhooks import FalWebhooks
from tests.emulators import Behaviour, FalEmulator, create_fal_app, serve
from tests.emulators.receiver import Received, Receiver

KEY = "fal-test-key"
ROUTE = RouteSpec("fal", "fal-ai/flux/dev")
PROMPT = {"prompt": "a red fox"}


@dataclass
class Rig:
    provider: FalProvider
    emulator: FalEmulator
    receiver: Receiver
    fal_url: str

    async def submit(self, job_id: str = "job-1", **job_input: Any) -> ProviderRef:
        return await self.provider.submit(
            ROUTE, {**PROMPT, **job_input}, job_id=job_id, kind="image"
        )

    async def delivered(self, count: int = 1) -> list[Received]:
        return await self.receiver.wait_for(count)

    async def parse(self, received: Received) -> WebhookDelivery:
        query = dict(parse_qsl(received.query))
        return await self.provider.parse_webhook(received.headers, received.body, query)


class Counting(httpx.AsyncBaseTransport):
    """Counts the requests that reach ``inner``."""

    def __init__(self, inner: httpx.AsyncBaseTransport) -> None:
        self.inner = inner
        self.requests = 0

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        self.requests += 1
        return await self.inner.handle_async_request(request)


@pytest.fixture
async def rig() -> AsyncIterator[Rig]:
    receiver = Receiver()
    app = create_fal_app(Behaviour(latency=0.05, webhook_retry_delays=[]))
    emulator: FalEmulator = app.state.emulator
    async with serve(receiver.app) as gateway_url, serve(app) as fal_url:
        provider = FalProvider(
            key=KEY,
            queue_url=fal_url,
            webhook_base_url=gateway_url,
            jwks_url=f"{fal_url}/.well-known/jwks.json",
        )
        yield Rig(provider, emulator, receiver, fal_url)
        await provider.aclose()
        await emulator.aclose()


@pytest.fixture
async def counted(rig: Rig) -> AsyncIterator[Any]:
    """Makes verifiers on the rig's JWKS whose fetches are counted (a ``Counting``)."""
    inner = httpx.AsyncHTTPTransport()

    def make(**options: Any) -> tuple[FalWebhooks, Counting]:
        counting = Counting(inner)
        url = f"{rig.fal_url}/.well-known/jwks.json"
        return FalWebhooks(url, transport=counting, **options), counting

    yield make
    await inner.aclose()


def same(delivered: ProviderState | None, polled: ProviderState) -> None:
    """The two states agree (errors by class, message and field)."""
    assert delivered is not None
    assert (delivered.kind, delivered.outputs, delivered.seed) == (
        polled.kind,
        polled.outputs,
        polled.seed,
    )
    if polled.error is None:
        assert delivered.error is None
    else:
        assert type(delivered.error) is type(polled.error)
        assert delivered.error is not None
        assert (delivered.error.code, delivered.error.param) == (
            polled.error.code,
            polled.error.param,
        )


# -- a delivery reads as the poll reads ----------------------------------------------------


async def test_a_finished_request_is_delivered_as_the_state_its_poll_reads(rig: Rig) -> None:
    ref = await rig.submit("job-7")
    [received] = await rig.delivered()
    assert received.path == "/v1/provider_webhooks/fal"

    delivery = await rig.parse(received)

    assert (delivery.request_id, delivery.job_id, delivery.event) == (
        ref.request_id,
        "job-7",
        "completed",
    )
    polled = await rig.provider.poll(ROUTE, ref)
    assert polled.kind is StateKind.SUCCEEDED and polled.outputs
    # the same state, but for the compute seconds: fal's delivery carries no metrics (the
    # status a poll reads does), so a compute-priced job finished by webhook costs its estimate
    assert delivery.state == dataclasses.replace(polled, compute_seconds=None)


@pytest.mark.parametrize(
    ("behaviour", "error_type", "param"),
    [
        ({"fail_runs": True}, "ProviderUnavailable", None),
        ({"fail_runs": True, "run_error_type": "validation_error"}, "ProviderInputError", None),
        ({"required_inputs": ["image_url"]}, "ProviderInputError", "image_url"),
    ],
)
async def test_a_failed_run_is_delivered_classified_as_its_poll_classifies_it(
    rig: Rig, behaviour: dict[str, Any], error_type: str, param: str | None
) -> None:
    rig.emulator.configure(**behaviour)
    ref = await rig.submit()
    [received] = await rig.delivered()

    delivery = await rig.parse(received)

    assert delivery.state is not None and delivery.state.kind is StateKind.FAILED
    assert type(delivery.state.error).__name__ == error_type
    assert delivery.state.error is not None and delivery.state.error.param == param
    same(delivery.state, await rig.provider.poll(ROUTE, ref))


async def test_a_cancelled_request_is_delivered_cancelled(rig: Rig) -> None:
    rig.emulator.configure(queue_time=30)
    ref = await rig.submit()
    await rig.provider.cancel(ROUTE, ref)
    [received] = await rig.delivered()
    delivery = await rig.parse(received)
    assert delivery.state == ProviderState(StateKind.CANCELLED)
    same(delivery.state, await rig.provider.poll(ROUTE, ref))


async def test_a_delivery_without_a_payload_asks_for_a_poll(rig: Rig, counted: Any) -> None:
    """fal sends ``payload: null`` (with ``payload_error``) when it cannot serialise it."""
    ref = await rig.submit()
    [received] = await rig.delivered()
    verifier, _ = counted()
    body = received.body.replace(b'"payload":{', b'"payload":null,"was":{')
    headers = rig.emulator.signer.headers(
        ref.request_id, body, int(received.headers["x-fal-webhook-timestamp"])
    )
    delivery = await verifier.parse(headers, body, {})
    assert (delivery.request_id, delivery.state) == (ref.request_id, None)


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
    changed = received.body.replace(b'"status":"OK"', b'"status":"ERROR"')
    assert changed != received.body
    with pytest.raises(WebhookRejected):
        await rig.provider.parse_webhook(received.headers, changed)
    other_request = received.headers | {"x-fal-webhook-request-id": "someone-else"}
    with pytest.raises(WebhookRejected):
        await rig.provider.parse_webhook(other_request, received.body)
    unsigned = {k: v for k, v in received.headers.items() if k != "x-fal-webhook-signature"}
    with pytest.raises(WebhookRejected):
        await rig.provider.parse_webhook(unsigned, received.body)


async def test_a_key_fal_does_not_publish_is_rejected_after_one_refetch(
    rig: Rig, counted: Any
) -> None:
    """An unknown key may be a rotation: the JWKS is fetched again, once, then it is refused."""
    verifier, counting = counted(refetch_floor=0)
    rig.emulator.script("webhook", "bad_signature")
    await rig.submit()
    [received] = await rig.delivered()
    with pytest.raises(WebhookRejected):
        await verifier.parse(received.headers, received.body, {})
    assert counting.requests == 2  # the first fetch, and one refetch


async def test_forgeries_within_the_refetch_floor_fetch_no_keys(rig: Rig, counted: Any) -> None:
    verifier, counting = counted(refetch_floor=60)
    rig.emulator.script("webhook", "bad_signature", "bad_signature", "bad_signature")
    for n in range(3):
        await rig.submit(f"job-{n}")
    for received in await rig.delivered(3):
        with pytest.raises(WebhookRejected):
            await verifier.parse(received.headers, received.body, {})
    assert counting.requests == 1  # the keys were fetched just now: as fresh as they get


async def test_rotated_keys_are_fetched_again_once_and_the_delivery_verifies(
    rig: Rig, counted: Any
) -> None:
    verifier, counting = counted(refetch_floor=0)
    await rig.submit("job-1")
    [first] = await rig.delivered(1)
    await verifier.parse(first.headers, first.body, {})
    rig.emulator.signer._key = None  # the emulator makes a new key: fal rotated its keys
    ref = await rig.submit("job-2")
    [_, second] = await rig.delivered(2)

    delivery = await verifier.parse(second.headers, second.body, {})

    assert delivery.request_id == ref.request_id
    assert counting.requests == 2
    await verifier.parse(second.headers, second.body, {})
    assert counting.requests == 2  # the new keys are kept


async def test_keys_that_cannot_be_fetched_are_a_503_not_a_rejection(rig: Rig) -> None:
    await rig.submit()
    [received] = await rig.delivered()
    down = FalWebhooks("http://127.0.0.1:9/jwks.json")  # nothing listens on port 9
    for _ in range(2):  # the second within the floor: answered without trying again
        with pytest.raises(ServiceUnavailable) as raised:
            await down.parse(received.headers, received.body, {})
        assert raised.value.status_code == 503


async def test_concurrent_deliveries_share_one_jwks_fetch(rig: Rig, counted: Any) -> None:
    verifier, counting = counted()
    for n in range(4):
        await rig.submit(f"job-{n}")
    deliveries = await rig.delivered(4)
    parsed = await asyncio.gather(*(verifier.parse(r.headers, r.body, {}) for r in deliveries))
    assert len({d.request_id for d in parsed}) == 4
    assert counting.requests == 1


async def test_the_jwks_tls_context_is_built_once_and_off_the_event_loop(
    rig: Rig, monkeypatch: pytest.MonkeyPatch
) -> None:
    built_in: list[int] = []
    create = httpx.create_ssl_context

    def recording(*args: Any, **kwargs: Any) -> Any:
        built_in.append(threading.get_ident())
        return create(*args, **kwargs)

    await rig.submit()
    (received,) = await rig.delivered()
    monkeypatch.setattr(httpx, "create_ssl_context", recording)
    verifier = FalWebhooks(f"{rig.fal_url}/.well-known/jwks.json", refetch_floor=0.0)
    await verifier.parse(received.headers, received.body, {})
    assert await verifier.keys.reload()  # fetched again, on the same context
    assert len(built_in) == 1
    assert built_in[0] != threading.get_ident()


async def test_the_submit_names_the_callback_only_when_webhooks_are_on(rig: Rig) -> None:
    plain = FalProvider(key=KEY, queue_url=rig.fal_url)
    try:
        await plain.submit(ROUTE, PROMPT, job_id="job-1", kind="image")
    finally:
        await plain.aclose()
    await rig.submit("job-2")
    without, with_hooks = (dict(parse_qsl(r.query)) for r in rig.emulator.requests("submit"))
    assert "fal_webhook" not in without
    gateway = rig.provider.webhook_base_url
    assert with_hooks["fal_webhook"] == f"{gateway}/v1/provider_webhooks/fal?job=job-2"
