from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Iterator
from types import SimpleNamespace
from typing import Any

import httpx
import pytest
import replicate.client
import respx

from gateway.errors import ConfigError
from providers import replicate as module
from providers.base import (
    ProviderError,
    ProviderInputError,
    ProviderLostRequest,
    ProviderRef,
    ProviderState,
    ProviderSubmitUncertain,
    ProviderTransientError,
    ProviderUnavailable,
    RouteSpec,
    StateKind,
)
from providers.replicate import ReplicateProvider

BASE = "https://api.replicate.com"
TOKEN = "r8_test_token"
GET_URL = f"{BASE}/v1/predictions/p1"
TQDM = " 45%|████▌     | 9/20 [00:01<00:01,  8.00it/s]"
JOB_INPUT = {"prompt": "a red fox", "width": 1024, "height": 576, "num_images": 2, "seed": 7}


def route(target: str = "o/n", **options: Any) -> RouteSpec:
    return RouteSpec("replicate", target, options)


def prediction(status: str = "starting", **fields: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
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
        "started_at": None,
        "completed_at": None,
        "urls": {"get": GET_URL, "cancel": f"{GET_URL}/cancel"},
    }
    body.update(fields)
    return body


def problem(status: int, detail: str = "boom", **headers: str) -> httpx.Response:
    body = {"title": "Error", "detail": detail, "status": status}
    return httpx.Response(status, json=body, headers=headers)


REF = ProviderRef("p1", {"target": "o/n", "kind": "image"})


@pytest.fixture
def api() -> Iterator[respx.MockRouter]:
    with respx.mock(base_url=BASE, assert_all_called=False) as router:
        yield router


@pytest.fixture(autouse=True)
def client_sleeps(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """The client's own GET retries (429/503/504) sleep here: recorded, not waited."""
    slept: list[float] = []
    real_sleep = asyncio.sleep

    async def sleep(seconds: float) -> None:
        slept.append(seconds)
        await real_sleep(0)

    monkeypatch.setattr(replicate.client, "asyncio", SimpleNamespace(sleep=sleep))
    return slept


@pytest.fixture
async def provider() -> AsyncIterator[ReplicateProvider]:
    made = ReplicateProvider(token=TOKEN, timeout=5.0, poll_interval=0.04)
    yield made
    await made.aclose()


def sent(call: Any) -> dict[str, Any]:
    body: dict[str, Any] = json.loads(call.request.content)
    return body


# -- submit ----------------------------------------------------------------------------------


async def test_submit_to_a_model_posts_the_mapped_input_with_the_token(
    api: respx.MockRouter, provider: ReplicateProvider
) -> None:
    post = api.post("/v1/models/o/n/predictions").respond(201, json=prediction())
    spec = RouteSpec(
        "replicate", "o/n", {"size": "aspect_ratio"}, input_map={"num_images": "num_outputs"}
    )
    ref = await provider.submit(spec, JOB_INPUT, job_id="job-1", kind="image")
    assert post.call_count == 1
    request = post.calls.last.request
    assert request.headers["Authorization"] == f"Bearer {TOKEN}"
    assert sent(post.calls.last) == {
        "input": {"prompt": "a red fox", "num_outputs": 2, "seed": 7, "aspect_ratio": "16:9"}
    }
    assert ref == ProviderRef(
        "p1", {"get": GET_URL, "cancel": f"{GET_URL}/cancel", "target": "o/n", "kind": "image"}
    )
    await provider.aclose()


async def test_submit_to_a_version_posts_the_version_id(
    api: respx.MockRouter, provider: ReplicateProvider
) -> None:
    post = api.post("/v1/predictions").respond(201, json=prediction())
    await provider.submit(route("o/n:abc123"), {"prompt": "x"}, job_id="j", kind="image")
    assert sent(post.calls.last) == {"version": "abc123", "input": {"prompt": "x"}}


@pytest.mark.parametrize("spec", [route("o/n", deployment=True), route("deployments/o/n")])
async def test_submit_to_a_deployment(
    api: respx.MockRouter, provider: ReplicateProvider, spec: RouteSpec
) -> None:
    post = api.post("/v1/deployments/o/n/predictions").respond(201, json=prediction())
    ref = await provider.submit(spec, {"prompt": "x"}, job_id="j", kind="image")
    assert ref.request_id == "p1"
    assert sent(post.calls.last) == {"input": {"prompt": "x"}}


async def test_a_plain_http_base_url_with_a_path_prefix_is_used() -> None:
    proxy = "http://proxy.internal:8080/replicate"
    provider = ReplicateProvider(token=TOKEN, base_url=proxy)
    with respx.mock(assert_all_called=False) as api:
        post = api.post(f"{proxy}/v1/models/o/n/predictions").respond(201, json=prediction())
        get = api.get(f"{proxy}/v1/predictions/p1").respond(200, json=prediction())
        ref = await provider.submit(route(), {"prompt": "x"}, job_id="j", kind="image")
        state = await provider.poll(route(), ref)
    assert (post.call_count, get.call_count, state.kind) == (1, 1, StateKind.QUEUED)
    await provider.aclose()


@pytest.mark.parametrize("target", ["o", "o/n/x", "deployments/o/n:v", "o n/x", ""])
async def test_a_bad_target_is_unavailable_without_a_request(
    api: respx.MockRouter, provider: ReplicateProvider, target: str
) -> None:
    with pytest.raises(ProviderUnavailable):
        await provider.submit(route(target), {"prompt": "x"}, job_id="j", kind="image")
    assert not api.calls


async def test_without_a_token_the_route_is_unavailable(api: respx.MockRouter) -> None:
    provider = ReplicateProvider(token=None)
    assert provider.availability(route()) == (False, "REPLICATE_API_TOKEN is not set")
    assert ReplicateProvider(token=TOKEN).availability(route()) == (True, None)
    with pytest.raises(ProviderUnavailable) as caught:
        await provider.submit(route(), {"prompt": "x"}, job_id="j", kind="image")
    assert caught.value.code == "provider_auth"
    assert not api.calls


@pytest.mark.parametrize(
    "kwargs", [{"base_url": "ftp://x"}, {"timeout": 0}, {"poll_interval": -1.0}]
)
def test_bad_settings_are_a_config_error(kwargs: dict[str, Any]) -> None:
    with pytest.raises(ConfigError):
        ReplicateProvider(token=TOKEN, **kwargs)


# -- poll ------------------------------------------------------------------------------------


async def poll_answer(
    api: respx.MockRouter, provider: ReplicateProvider, body: dict[str, Any], kind: str = "image"
) -> ProviderState:
    api.get("/v1/predictions/p1").respond(200, json=body)
    return await provider.poll(route(), ProviderRef("p1", {"kind": kind}))


async def test_starting_is_queued_without_a_position(
    api: respx.MockRouter, provider: ReplicateProvider
) -> None:
    state = await poll_answer(api, provider, prediction("starting"))
    assert (state.kind, state.queue_position, state.progress) == (StateKind.QUEUED, None, None)


@pytest.mark.parametrize(
    ("logs", "progress"),
    [("", None), ("Using seed: 3\n", None), (f"Using seed: 3\n  0%|  | 0/20\n{TQDM}\n", 45)],
)
async def test_processing_reports_progress_from_tqdm_logs(
    api: respx.MockRouter, provider: ReplicateProvider, logs: str, progress: int | None
) -> None:
    state = await poll_answer(api, provider, prediction("processing", logs=logs))
    assert (state.kind, state.progress) == (StateKind.RUNNING, progress)


@pytest.mark.parametrize(
    ("output", "kind", "expected"),
    [
        ("https://cdn/x/out-0.webp", "image", [("image/webp", "https://cdn/x/out-0.webp")]),
        (
            ["https://cdn/a.png?sig=1", "https://cdn/b.JPG", "https://cdn/c"],
            "image",
            [
                ("image/png", "https://cdn/a.png?sig=1"),
                ("image/jpeg", "https://cdn/b.JPG"),
                ("image/png", "https://cdn/c"),
            ],
        ),
        (
            {"video": "https://cdn/v.webm", "fps": 8},
            "video",
            [("video/webm", "https://cdn/v.webm")],
        ),
        ("https://cdn/clip", "video", [("video/mp4", "https://cdn/clip")]),
        ("https://cdn/anim.gif", "video", [("image/gif", "https://cdn/anim.gif")]),
        ("data:image/jpeg;base64,AAAA", "image", [("image/jpeg", "data:image/jpeg;base64,AAAA")]),
        ("just some text", "image", []),
    ],
)
async def test_succeeded_outputs_are_urls_with_content_types(
    api: respx.MockRouter,
    provider: ReplicateProvider,
    output: Any,
    kind: str,
    expected: list[tuple[str, str]],
) -> None:
    body = prediction("succeeded", output=output, input={"prompt": "x", "seed": 42})
    state = await poll_answer(api, provider, body, kind)
    assert state.kind is StateKind.SUCCEEDED
    assert [(o.content_type, o.url) for o in state.outputs] == expected
    assert state.seed == 42


async def test_dict_outputs_keep_their_key_and_a_random_seed_comes_from_the_logs(
    api: respx.MockRouter, provider: ReplicateProvider
) -> None:
    body = prediction("succeeded", output={"video": "https://cdn/v.mp4"}, logs="Using seed: 1234\n")
    state = await poll_answer(api, provider, body, "video")
    assert state.outputs[0].extra == {"name": "video"}
    assert state.seed == 1234


@pytest.mark.parametrize(
    ("error", "expected"),
    [
        ("Prediction input failed validation: width must be <= 1440", ProviderInputError),
        ("invalid image: cannot identify image file", ProviderInputError),
        ("CUDA out of memory. Tried to allocate 2.00 GiB", ProviderUnavailable),
        (None, ProviderUnavailable),
    ],
)
async def test_failed_predictions_are_classified(
    api: respx.MockRouter,
    provider: ReplicateProvider,
    error: str | None,
    expected: type[ProviderError],
) -> None:
    state = await poll_answer(api, provider, prediction("failed", error=error))
    assert state.kind is StateKind.FAILED
    assert isinstance(state.error, expected)
    assert type(state.error) is expected and state.error.message


@pytest.mark.parametrize("status", ["canceled", "aborted"])
async def test_canceled_and_aborted_are_cancelled(
    api: respx.MockRouter, provider: ReplicateProvider, status: str
) -> None:
    state = await poll_answer(api, provider, prediction(status))
    assert state.kind is StateKind.CANCELLED


# -- errors ----------------------------------------------------------------------------------

SUBMIT_ERRORS = [
    (400, ProviderInputError, "invalid_input"),
    (401, ProviderUnavailable, "provider_auth"),
    (402, ProviderUnavailable, "provider_out_of_credit"),
    (403, ProviderUnavailable, "provider_auth"),
    (404, ProviderUnavailable, "provider_unavailable"),
    (422, ProviderInputError, "invalid_input"),
    (429, ProviderTransientError, "provider_transient_error"),
    (500, ProviderTransientError, "provider_transient_error"),
    (503, ProviderTransientError, "provider_transient_error"),
]


@pytest.mark.parametrize(("status", "expected", "code"), SUBMIT_ERRORS)
async def test_http_errors_on_submit_are_translated_and_never_retried(
    api: respx.MockRouter,
    provider: ReplicateProvider,
    status: int,
    expected: type[ProviderError],
    code: str,
) -> None:
    post = api.post("/v1/models/o/n/predictions").mock(return_value=problem(status, "- input"))
    with pytest.raises(expected) as caught:
        await provider.submit(route(), {"prompt": "x"}, job_id="j", kind="image")
    assert type(caught.value) is expected
    assert caught.value.code == code
    assert isinstance(caught.value.__cause__, replicate.exceptions.ReplicateError)
    assert post.call_count == 1


async def test_an_input_error_carries_replicates_detail(
    api: respx.MockRouter, provider: ReplicateProvider
) -> None:
    detail = "- input.prompt: prompt is required"
    api.post("/v1/models/o/n/predictions").mock(return_value=problem(422, detail))
    with pytest.raises(ProviderInputError, match="prompt is required"):
        await provider.submit(route(), {}, job_id="j", kind="image")


@pytest.mark.parametrize(
    ("detail", "headers", "retry_after"),
    [
        ("Request was throttled. Expected available in 7 second(s).", {"Retry-After": "7"}, 7.0),
        ("Request was throttled. Expected available in 1 second.", {}, 1.0),
        # ReplicateError keeps no headers: a bare Retry-After cannot be seen
        ("Too many requests", {"Retry-After": "9"}, None),
    ],
)
async def test_throttled_submit_carries_retry_after(
    api: respx.MockRouter,
    provider: ReplicateProvider,
    detail: str,
    headers: dict[str, str],
    retry_after: float | None,
) -> None:
    api.post("/v1/models/o/n/predictions").mock(return_value=problem(429, detail, **headers))
    with pytest.raises(ProviderTransientError) as caught:
        await provider.submit(route(), {"prompt": "x"}, job_id="j", kind="image")
    assert caught.value.retry_after == retry_after


GET_ERRORS = [
    (400, ProviderUnavailable, 1),
    (401, ProviderUnavailable, 1),
    (402, ProviderUnavailable, 1),
    (403, ProviderUnavailable, 1),
    (404, ProviderLostRequest, 1),
    (422, ProviderUnavailable, 1),
    (500, ProviderTransientError, 1),
    (503, ProviderTransientError, 10),  # the client retried it 9 times first
]


@pytest.mark.parametrize(("status", "expected", "calls"), GET_ERRORS)
async def test_http_errors_on_get_are_translated(
    api: respx.MockRouter,
    provider: ReplicateProvider,
    status: int,
    expected: type[ProviderError],
    calls: int,
) -> None:
    get = api.get("/v1/predictions/p1").mock(return_value=problem(status))
    with pytest.raises(expected) as caught:
        await provider.poll(route(), REF)
    assert type(caught.value) is expected
    assert get.call_count == calls


async def test_a_throttled_get_is_retried_by_the_client_honouring_retry_after(
    api: respx.MockRouter, provider: ReplicateProvider, client_sleeps: list[float]
) -> None:
    detail = "Request was throttled. Expected available in 3 second(s)."
    get = api.get("/v1/predictions/p1").mock(
        return_value=problem(429, detail, **{"Retry-After": "3"})
    )
    with pytest.raises(ProviderTransientError) as caught:
        await provider.poll(route(), REF)
    assert caught.value.retry_after == 3.0
    assert get.call_count == 10
    assert client_sleeps == [3.0] * 9


async def test_a_transient_get_failure_recovered_by_the_client_is_invisible(
    api: respx.MockRouter, provider: ReplicateProvider, client_sleeps: list[float]
) -> None:
    api.get("/v1/predictions/p1").mock(
        side_effect=[problem(503), httpx.Response(200, json=prediction("processing"))]
    )
    state = await provider.poll(route(), REF)
    assert state.kind is StateKind.RUNNING
    assert len(client_sleeps) == 1


@pytest.mark.parametrize(
    "error", [httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout, httpx.ProxyError]
)
async def test_a_submit_that_was_never_sent_is_transient(
    api: respx.MockRouter, provider: ReplicateProvider, error: type[Exception]
) -> None:
    api.post("/v1/models/o/n/predictions").mock(side_effect=error)
    with pytest.raises(ProviderTransientError) as caught:
        await provider.submit(route(), {"prompt": "x"}, job_id="j", kind="image")
    assert isinstance(caught.value.__cause__, error)
    assert "api.replicate.com" in caught.value.message  # which host could not be reached


@pytest.mark.parametrize(
    "error", [httpx.ReadTimeout, httpx.WriteTimeout, httpx.RemoteProtocolError, httpx.ReadError]
)
async def test_a_submit_that_failed_after_sending_is_uncertain(
    api: respx.MockRouter, provider: ReplicateProvider, error: type[Exception]
) -> None:
    post = api.post("/v1/models/o/n/predictions").mock(side_effect=error)
    with pytest.raises(ProviderSubmitUncertain):
        await provider.submit(route(), {"prompt": "x"}, job_id="j", kind="image")
    assert post.call_count == 1


async def test_a_submit_past_the_deadline_is_uncertain(api: respx.MockRouter) -> None:
    received: list[httpx.Request] = []

    async def hang(request: httpx.Request) -> httpx.Response:
        received.append(request)
        await asyncio.sleep(5)
        return httpx.Response(201, json=prediction())

    api.post("/v1/models/o/n/predictions").mock(side_effect=hang)
    provider = ReplicateProvider(token=TOKEN, timeout=0.05)
    with pytest.raises(ProviderSubmitUncertain) as caught:
        await provider.submit(route(), {"prompt": "x"}, job_id="j", kind="image")
    assert isinstance(caught.value.__cause__, TimeoutError)
    assert len(received) == 1


@pytest.mark.parametrize("error", [httpx.ConnectError, httpx.ReadTimeout, httpx.ReadError])
async def test_transport_errors_on_get_are_transient(
    api: respx.MockRouter, provider: ReplicateProvider, error: type[Exception]
) -> None:
    api.get("/v1/predictions/p1").mock(side_effect=error)
    with pytest.raises(ProviderTransientError):
        await provider.poll(route(), REF)


@pytest.mark.parametrize(
    "response",
    [
        httpx.Response(200, text="<html>proxy login</html>"),
        httpx.Response(200, json=["not", "a", "prediction"]),
        httpx.Response(200, json={"id": "p1", "status": "succeeded"}),
        httpx.Response(200, json=prediction("exploded")),
    ],
)
async def test_malformed_answers_are_transient_on_get_and_unavailable_on_submit(
    api: respx.MockRouter, provider: ReplicateProvider, response: httpx.Response
) -> None:
    api.get("/v1/predictions/p1").mock(return_value=response)
    api.post("/v1/models/o/n/predictions").mock(return_value=response)
    with pytest.raises(ProviderTransientError):
        await provider.poll(route(), REF)
    with pytest.raises(ProviderUnavailable):
        await provider.submit(route(), {"prompt": "x"}, job_id="j", kind="image")


# -- cancel ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "response",
    [
        httpx.Response(200, json=prediction("canceled")),
        httpx.Response(200, json=prediction("succeeded", output="https://cdn/a.png")),
        httpx.Response(200, json=prediction("aborted")),
        problem(404, "Not found"),
    ],
)
async def test_cancel_of_a_running_finished_or_unknown_prediction_is_fine(
    api: respx.MockRouter, provider: ReplicateProvider, response: httpx.Response
) -> None:
    cancel = api.post("/v1/predictions/p1/cancel").mock(return_value=response)
    await provider.cancel(route(), REF)
    assert cancel.call_count == 1


async def test_a_failed_cancel_raises_a_translated_error(
    api: respx.MockRouter, provider: ReplicateProvider
) -> None:
    api.post("/v1/predictions/p1/cancel").mock(side_effect=httpx.ConnectError)
    with pytest.raises(ProviderTransientError):
        await provider.cancel(route(), REF)


# -- clients and loops -----------------------------------------------------------------------


def test_one_instance_works_across_sequential_event_loops() -> None:
    provider = ReplicateProvider(token=TOKEN)
    clients: list[object] = []

    async def once() -> StateKind:
        ref = await provider.submit(route(), {"prompt": "x"}, job_id="j", kind="image")
        state = await provider.poll(route(), ref)
        clients.append(provider._client())
        return state.kind

    with respx.mock(base_url=BASE, assert_all_called=False) as api:
        api.post("/v1/models/o/n/predictions").respond(201, json=prediction())
        api.get("/v1/predictions/p1").respond(200, json=prediction("processing"))
        assert asyncio.run(once()) is StateKind.RUNNING
        assert asyncio.run(once()) is StateKind.RUNNING
        asyncio.run(provider.aclose())
    assert clients[0] is not clients[1]


async def test_aclose_closes_the_http_client_and_a_later_call_makes_a_new_one(
    api: respx.MockRouter, provider: ReplicateProvider
) -> None:
    api.get("/v1/predictions/p1").respond(200, json=prediction())
    await provider.poll(route(), REF)
    http = module._cached_httpx_client(provider._client())
    assert http is not None and not http.is_closed
    await provider.aclose()
    assert http.is_closed
    assert (await provider.poll(route(), REF)).kind is StateKind.QUEUED
    await provider.aclose()
    await provider.aclose()  # twice is harmless


# -- wait ------------------------------------------------------------------------------------


async def test_wait_reads_on_the_pollers_schedule_and_forgets_ended_requests(
    api: respx.MockRouter, provider: ReplicateProvider
) -> None:
    get = api.get("/v1/predictions/p1").mock(
        side_effect=[
            httpx.Response(200, json=prediction("processing")),
            httpx.Response(200, json=prediction("processing")),
            httpx.Response(200, json=prediction("canceled")),
        ]
    )
    ref = ProviderRef("p1", {})
    quarter = provider.poll_interval / 4

    assert (await provider.wait(route(), ref, 30.0)).kind is StateKind.RUNNING
    assert (await provider.wait(route(), ref, 30.0)).kind is StateKind.RUNNING
    assert provider.poller.next_delay("p1") == pytest.approx(quarter * 1.5**2)
    assert (await provider.wait(route(), ref, 30.0)).terminal
    assert get.call_count == 3
    assert provider.poller.next_delay("p1") == pytest.approx(quarter)  # it starts over
