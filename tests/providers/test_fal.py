from __future__ import annotations

import asyncio
import email.utils
import json
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import pytest
import respx

from gateway.errors import ConfigError
from gateway.lean_client import LeanHttpClient
from providers import fal_http
from providers.base import (
    Output,
    ProviderError,
    ProviderInputError,
    ProviderLostRequest,
    ProviderRef,
    ProviderSubmitUncertain,
    ProviderTransientError,
    ProviderUnavailable,
    RouteSpec,
    StateKind,
)
from providers.fal import FalProvider, normalise_queue_url, progress_from_logs

QUEUE = "https://queue.test"  # not one of fal-client's backup-domain hosts
KEY = "fal-test-key"
APP = "fal-ai/flux/dev"
BASE = f"{QUEUE}/fal-ai/flux/requests/req-1"
URLS = {"status_url": f"{BASE}/status", "response_url": BASE, "cancel_url": f"{BASE}/cancel"}
REF = ProviderRef("req-1", {"app": APP, **URLS})
PROMPT = {"prompt": "a red fox", "width": 640, "height": 480, "seed": 7}


@pytest.fixture
async def provider() -> AsyncIterator[FalProvider]:
    fal = FalProvider(key=KEY, queue_url=QUEUE)
    yield fal
    await fal.aclose()


@pytest.fixture
def mock() -> Iterator[respx.MockRouter]:
    with respx.mock(assert_all_called=False) as router:
        yield router


def route(target: str = APP, **options: Any) -> RouteSpec:
    return RouteSpec("fal", target, options)


def accepted(request_id: str = "req-1") -> httpx.Response:
    return httpx.Response(200, json={"request_id": request_id, **URLS, "queue_position": 0})


def status(body: dict[str, Any], code: int = 202) -> httpx.Response:
    return httpx.Response(code, json={"logs": None, **body})


def completed(**fields: Any) -> httpx.Response:
    return status({"status": "COMPLETED", "logs": [], "metrics": {}, **fields}, 200)


LIST_DETAIL = {"detail": [{"loc": ["body", "image_size", "width"], "msg": "must be <= 2048"}]}


# -- submit --------------------------------------------------------------------------------


async def test_submit_posts_mapped_input_with_the_key_and_queue_headers(
    provider: FalProvider, mock: respx.MockRouter
) -> None:
    post = mock.post(f"{QUEUE}/{APP}/image-to-image").mock(return_value=accepted())
    spec = RouteSpec(
        "fal",
        APP,
        {
            "size": "image_size",
            "priority": "low",
            "hint": "runner-7",
            "start_timeout": 600,
            "path": "/image-to-image",
        },
        input_map={"seed": "extra.seed"},
        constants={"enable_safety_checker": False},
    )

    ref = await provider.submit(spec, PROMPT, job_id="job-1", kind="image")

    request = post.calls.last.request
    assert request.headers["authorization"] == f"Key {KEY}"
    assert request.headers["x-fal-queue-priority"] == "low"
    assert request.headers["x-fal-runner-hint"] == "runner-7"
    assert request.headers["x-fal-request-timeout"] == "600.0"
    assert json.loads(request.content) == {
        "prompt": "a red fox",
        "extra": {"seed": 7},
        "image_size": {"width": 640, "height": 480},
        "enable_safety_checker": False,
    }
    assert ref == ProviderRef("req-1", {"app": APP, **URLS})


async def test_submit_always_sends_a_start_timeout(
    provider: FalProvider, mock: respx.MockRouter
) -> None:
    post = mock.post(f"{QUEUE}/{APP}").mock(return_value=accepted())
    await provider.submit(route(), PROMPT, job_id="job-1", kind="image")
    headers = post.calls.last.request.headers
    assert headers["x-fal-request-timeout"] == "3600.0"
    assert "x-fal-queue-priority" not in headers
    assert "x-fal-runner-hint" not in headers
    assert json.loads(post.calls.last.request.content) == PROMPT


@pytest.mark.parametrize(
    "options", [{"priority": "urgent"}, {"start_timeout": 0.5}, {"start_timeout": "soon"}]
)
async def test_submit_with_bad_route_options_is_unavailable_without_a_request(
    provider: FalProvider, mock: respx.MockRouter, options: dict[str, Any]
) -> None:
    post = mock.post(f"{QUEUE}/{APP}").mock(return_value=accepted())
    with pytest.raises(ProviderUnavailable):
        await provider.submit(route(**options), PROMPT, job_id="job-1", kind="image")
    assert post.call_count == 0


async def test_a_plain_http_queue_url_with_a_prefix_serves_submit_and_status(
    mock: respx.MockRouter,
) -> None:
    fal = FalProvider(key=KEY, queue_url="http://127.0.0.1:8080/fal//")
    assert fal.queue_url == "http://127.0.0.1:8080/fal/"
    post = mock.post(f"http://127.0.0.1:8080/fal/{APP}").mock(return_value=accepted())
    get = mock.get("http://127.0.0.1:8080/fal/fal-ai/flux/requests/req-9/status")
    get.mock(return_value=status({"status": "IN_QUEUE", "queue_position": 2}))
    try:
        await fal.submit(route(), PROMPT, job_id="job-1", kind="image")
        # a reference without URLs (an older record) is rebuilt on the same host
        state = await fal.poll(route(), ProviderRef("req-9", {"app": APP}))
    finally:
        await fal.aclose()
    assert post.call_count == 1
    assert state.kind is StateKind.QUEUED and state.queue_position == 2


async def test_two_providers_each_submit_to_their_own_queue_host(mock: respx.MockRouter) -> None:
    first = mock.post(f"https://one.test/{APP}").mock(return_value=accepted())
    second = mock.post(f"https://two.test/{APP}").mock(return_value=accepted())
    one = FalProvider(key=KEY, queue_url="https://one.test")
    two = FalProvider(key=KEY, queue_url="https://two.test")
    try:
        await two.submit(route(), PROMPT, job_id="job-2", kind="image")
        await one.submit(route(), PROMPT, job_id="job-1", kind="image")
    finally:
        await one.aclose()
        await two.aclose()
    assert (first.call_count, second.call_count) == (1, 1)


@pytest.mark.parametrize("url", ["ftp://queue.test", "queue.fal.run", "https://q.test/?a=1"])
def test_a_queue_url_that_is_not_http_is_a_config_error(url: str) -> None:
    with pytest.raises(ConfigError):
        normalise_queue_url(url)


# -- poll ----------------------------------------------------------------------------------


async def test_a_queued_request_reports_its_position_and_no_logs_are_asked_for(
    provider: FalProvider, mock: respx.MockRouter
) -> None:
    get = mock.get(URLS["status_url"]).mock(
        return_value=status({"status": "IN_QUEUE", "queue_position": 3})
    )
    state = await provider.poll(route(), REF)
    assert (state.kind, state.queue_position, state.progress) == (StateKind.QUEUED, 3, None)
    assert get.calls.last.request.url.params["logs"] == "0"


async def test_a_route_that_asks_for_logs_reports_progress_from_the_latest_line(
    provider: FalProvider, mock: respx.MockRouter
) -> None:
    logs = [{"message": "Loading"}, {"message": " 45%|████▌     | 9/20 [00:03<00:04]"}]
    get = mock.get(URLS["status_url"]).mock(
        return_value=status({"status": "IN_PROGRESS", "logs": logs})
    )
    state = await provider.poll(route(logs=True), REF)
    assert (state.kind, state.progress) == (StateKind.RUNNING, 45)
    assert get.calls.last.request.url.params["logs"] == "1"


async def test_status_reads_of_many_polls_go_through_one_client_without_logs(
    mock: respx.MockRouter, monkeypatch: pytest.MonkeyPatch
) -> None:
    built: list[object] = []

    class Counting(fal_http.LeanHttpClient):
        def __init__(self, **kwargs: Any) -> None:
            built.append(self)
            super().__init__(**kwargs)

    monkeypatch.setattr(fal_http, "LeanHttpClient", Counting)
    mock.post(f"{QUEUE}/{APP}").mock(return_value=accepted())
    get = mock.get(URLS["status_url"]).mock(return_value=status({"status": "IN_PROGRESS"}))
    fal = FalProvider(key=KEY, queue_url=QUEUE)
    try:
        ref = await fal.submit(route(), PROMPT, job_id="job-1", kind="image")
        states = [await fal.poll(route(), ref) for _ in range(5)]
    finally:
        await fal.aclose()
    assert [s.kind for s in states] == [StateKind.RUNNING] * 5
    assert len(built) == 1
    assert {call.request.url.params["logs"] for call in get.calls} == {"0"}


@pytest.mark.parametrize(
    ("logs", "progress"),
    [
        ([{"message": "Step 3/4"}], 75),
        ([{"message": "12.5 % done"}], 12),
        ([{"message": "step 1/4"}, {"message": "step 2/4"}, {"message": "saving"}], 50),
        ([{"message": "loading weights"}], None),
        ([{"message": "7/3 is no fraction of a run"}], None),
        ([{"level": "INFO"}, "text"], None),
        (None, None),
    ],
)
def test_progress_is_parsed_from_percentages_and_step_fractions(
    logs: Any, progress: int | None
) -> None:
    assert progress_from_logs(logs) == progress


async def test_a_completed_request_reads_its_images_and_seed_once(
    provider: FalProvider, mock: respx.MockRouter
) -> None:
    get_status = mock.get(URLS["status_url"]).mock(return_value=completed())
    images = [
        {"url": "https://cdn.test/a.png", "width": 640, "height": 480, "content_type": "image/png"},
        {"url": "https://cdn.test/b.jpg?sig=1", "width": 640, "height": 480},
    ]
    result = mock.get(BASE).respond(200, json={"images": images, "seed": 42, "timings": {}})
    state = await provider.poll(route(), REF)
    assert state.kind is StateKind.SUCCEEDED and state.progress == 100
    assert state.outputs == (
        Output("image/png", url="https://cdn.test/a.png", width=640, height=480),
        Output("image/jpeg", url="https://cdn.test/b.jpg?sig=1", width=640, height=480),
    )
    assert state.seed == 42
    assert (get_status.call_count, result.call_count) == (1, 1)


@pytest.mark.parametrize(
    ("body", "outputs", "seed"),
    [
        (
            {"image": {"url": "https://cdn.test/x.webp", "width": 8, "height": 9}},
            (Output("image/webp", url="https://cdn.test/x.webp", width=8, height=9),),
            None,
        ),
        (
            {"video": {"url": "https://cdn.test/v"}, "seed": 3},
            (Output("video/mp4", url="https://cdn.test/v"),),
            3,
        ),
        (
            {"video": {"url": "https://cdn.test/v.webm", "content_type": "video/webm"}},
            (Output("video/webm", url="https://cdn.test/v.webm"),),
            None,
        ),
    ],
)
async def test_a_single_image_or_a_video_is_one_output(
    provider: FalProvider,
    mock: respx.MockRouter,
    body: dict[str, Any],
    outputs: tuple[Output, ...],
    seed: int | None,
) -> None:
    mock.get(URLS["status_url"]).mock(return_value=completed())
    mock.get(BASE).respond(200, json=body)
    state = await provider.poll(route(), REF)
    assert (state.kind, state.outputs, state.seed) == (StateKind.SUCCEEDED, outputs, seed)


async def test_a_run_failed_on_validation_is_an_input_error(
    provider: FalProvider, mock: respx.MockRouter
) -> None:
    mock.get(URLS["status_url"]).mock(
        return_value=completed(error="prompt is too long", error_type="validation_error")
    )
    result = mock.get(BASE).respond(422, json=LIST_DETAIL)
    state = await provider.poll(route(), REF)
    assert state.kind is StateKind.FAILED
    assert isinstance(state.error, ProviderInputError)
    assert "prompt is too long" in state.error.message
    assert result.call_count == 0


async def test_a_run_failed_without_a_type_is_classified_by_its_replayed_result(
    provider: FalProvider, mock: respx.MockRouter
) -> None:
    mock.get(URLS["status_url"]).mock(return_value=completed(error="bad input"))
    mock.get(BASE).respond(422, json=LIST_DETAIL)
    state = await provider.poll(route(), REF)
    assert state.kind is StateKind.FAILED
    assert isinstance(state.error, ProviderInputError)
    assert state.error.param == "image_size.width"
    assert "'image_size.width': must be <= 2048" in state.error.message


@pytest.mark.parametrize("result", [httpx.Response(500, json={}), httpx.ConnectError("down")])
async def test_a_run_failed_in_the_app_is_a_provider_error(
    provider: FalProvider, mock: respx.MockRouter, result: httpx.Response | Exception
) -> None:
    mock.get(URLS["status_url"]).mock(
        return_value=completed(error="CUDA out of memory", error_type="runner_error")
    )
    mock.get(BASE).mock(side_effect=[result])
    state = await provider.poll(route(), REF)
    assert state.kind is StateKind.FAILED
    assert type(state.error) is ProviderUnavailable
    assert "CUDA out of memory" in state.error.message


async def test_a_request_cancelled_at_fal_is_cancelled(
    provider: FalProvider, mock: respx.MockRouter
) -> None:
    mock.get(URLS["status_url"]).mock(
        return_value=completed(error="Request was cancelled", error_type="request_cancelled")
    )
    state = await provider.poll(route(), REF)
    assert state.kind is StateKind.CANCELLED


@pytest.mark.parametrize(
    "response",
    [
        httpx.Response(200, text="<html>oops</html>"),
        httpx.Response(200, json={"status": "PAUSED", "logs": None}),
        httpx.Response(202, json={"queue_position": 1}),
        httpx.Response(202, json=["IN_QUEUE"]),
    ],
)
async def test_a_malformed_status_is_transient(
    provider: FalProvider, mock: respx.MockRouter, response: httpx.Response
) -> None:
    mock.get(URLS["status_url"]).mock(return_value=response)
    with pytest.raises(ProviderTransientError):
        await provider.poll(route(), REF)


@pytest.mark.parametrize(
    ("response", "error"),
    [
        (httpx.Response(422, json=LIST_DETAIL), ProviderInputError),
        (httpx.Response(400, json={"detail": "image_url is not reachable"}), ProviderInputError),
        (httpx.Response(404, json={"detail": "Request not found"}), ProviderLostRequest),
        (httpx.Response(503, json={"detail": "busy"}), ProviderTransientError),
        (httpx.Response(200, json={"timings": {}}), ProviderUnavailable),
        (httpx.Response(200, json={"images": [{"width": 3}]}), ProviderUnavailable),
        (httpx.Response(200, text="not json"), ProviderUnavailable),
        (httpx.ReadTimeout("slow"), ProviderTransientError),
    ],
)
async def test_the_result_read_translates_the_replayed_answer(
    provider: FalProvider,
    mock: respx.MockRouter,
    response: httpx.Response | Exception,
    error: type[ProviderError],
) -> None:
    mock.get(URLS["status_url"]).mock(return_value=completed())
    result = mock.get(BASE).mock(side_effect=[response])
    with pytest.raises(error) as raised:
        await provider.poll(route(), REF)
    assert type(raised.value) is error
    assert result.call_count == 1
    if error is ProviderInputError and isinstance(response, httpx.Response):
        assert "image_size.width" in raised.value.message or "reachable" in raised.value.message


# -- HTTP errors ---------------------------------------------------------------------------

HTTP_DATE = "<an HTTP date 120 s from now>"  # made when the request is answered

#: status, body, headers -> error class, code, retry_after (None: absent, float: about)
HTTP_ERRORS: list[tuple[int, Any, dict[str, str], type[ProviderError], str, float | None]] = [
    (400, {"detail": "bad image"}, {}, ProviderInputError, "invalid_input", None),
    (401, {"detail": "no key"}, {}, ProviderUnavailable, "provider_auth", None),
    (402, {"detail": "pay up"}, {}, ProviderUnavailable, "provider_out_of_credit", None),
    (403, {"detail": "forbidden"}, {}, ProviderUnavailable, "provider_auth", None),
    (422, LIST_DETAIL, {}, ProviderInputError, "invalid_input", None),
    (429, {"detail": "slow down"}, {"Retry-After": "7"}, ProviderTransientError, "", 7.0),
    (500, {"detail": "boom"}, {}, ProviderTransientError, "provider_transient_error", None),
    (503, {"detail": "busy"}, {"Retry-After": HTTP_DATE}, ProviderTransientError, "", 120.0),
]


@pytest.mark.parametrize(("code", "body", "headers", "error", "error_code", "after"), HTTP_ERRORS)
async def test_an_http_error_on_submit_is_translated_and_never_retried(
    provider: FalProvider,
    mock: respx.MockRouter,
    code: int,
    body: Any,
    headers: dict[str, str],
    error: type[ProviderError],
    error_code: str,
    after: float | None,
) -> None:
    post = mock.post(f"{QUEUE}/{APP}").mock(return_value=answer(code, body, headers))
    with pytest.raises(error) as raised:
        await provider.submit(route(), PROMPT, job_id="job-1", kind="image")
    assert_error(raised.value, error, error_code, after)
    assert post.call_count == 1
    if code == 422:
        assert raised.value.param == "image_size.width"


async def test_an_unknown_app_on_submit_is_unavailable(
    provider: FalProvider, mock: respx.MockRouter
) -> None:
    mock.post(f"{QUEUE}/fal-ai/nope").respond(404, json={"detail": "Application not found"})
    with pytest.raises(ProviderUnavailable) as raised:
        await provider.submit(route("fal-ai/nope"), PROMPT, job_id="job-1", kind="image")
    assert type(raised.value) is ProviderUnavailable


@pytest.mark.parametrize(("code", "body", "headers", "error", "error_code", "after"), HTTP_ERRORS)
async def test_an_http_error_on_status_is_translated(
    provider: FalProvider,
    mock: respx.MockRouter,
    code: int,
    body: Any,
    headers: dict[str, str],
    error: type[ProviderError],
    error_code: str,
    after: float | None,
) -> None:
    get = mock.get(URLS["status_url"]).mock(return_value=answer(code, body, headers))
    with pytest.raises(error) as raised:
        await provider.poll(route(), REF)
    assert_error(raised.value, error, error_code, after)
    assert get.call_count == 1  # retries are the gateway's (its policy honours Retry-After)


async def test_an_unknown_request_on_status_is_lost(
    provider: FalProvider, mock: respx.MockRouter
) -> None:
    mock.get(URLS["status_url"]).respond(404, json={"detail": "Request not found"})
    with pytest.raises(ProviderLostRequest):
        await provider.poll(route(), REF)


async def test_an_ingress_error_page_on_status_is_transient_at_once(
    provider: FalProvider, mock: respx.MockRouter
) -> None:
    get = mock.get(URLS["status_url"]).respond(502, text="<center>nginx</center>")
    with pytest.raises(ProviderTransientError):
        await provider.poll(route(), REF)
    assert get.call_count == 1


def answer(code: int, body: Any, headers: dict[str, str]) -> httpx.Response:
    if headers.get("Retry-After") == HTTP_DATE:
        headers = {"Retry-After": email.utils.formatdate(time.time() + 120, usegmt=True)}
    return httpx.Response(code, json=body, headers=headers)


def assert_error(
    error: ProviderError, cls: type[ProviderError], code: str, after: float | None
) -> None:
    assert type(error) is cls
    if code:
        assert error.code == code
    if after is None:
        assert error.retry_after is None
    else:
        assert error.retry_after is not None and abs(error.retry_after - after) < 5


# -- transport errors and timeouts ---------------------------------------------------------


async def test_a_connect_error_on_submit_is_transient(
    provider: FalProvider, mock: respx.MockRouter
) -> None:
    post = mock.post(f"{QUEUE}/{APP}").mock(side_effect=httpx.ConnectError("refused"))
    with pytest.raises(ProviderTransientError) as caught:
        await provider.submit(route(), PROMPT, job_id="job-1", kind="image")
    assert post.call_count == 1
    assert httpx.URL(QUEUE).netloc.decode() in caught.value.message  # which host is down


async def test_a_connect_error_on_fal_and_its_backup_domain_is_transient(
    mock: respx.MockRouter,
) -> None:
    fal = FalProvider(key=KEY)  # the default host, which fal-client backs with another domain
    primary = mock.post(f"https://queue.fal.run/{APP}").mock(side_effect=httpx.ConnectError("x"))
    backup = mock.post(f"https://queue.falrun.com/{APP}").mock(side_effect=httpx.ConnectError("y"))
    try:
        with pytest.raises(ProviderTransientError) as caught:
            await fal.submit(route(), PROMPT, job_id="job-1", kind="image")
    finally:
        await fal.aclose()
    assert (primary.call_count, backup.call_count) == (1, 1)
    assert "queue.fal.run" in caught.value.message  # the host the route names, not the backup


@pytest.mark.parametrize(
    "exc",
    [
        httpx.ReadTimeout("slow"),
        httpx.WriteTimeout("slow"),
        httpx.RemoteProtocolError("reset"),
        httpx.ReadError("reset"),
    ],
)
async def test_a_submit_that_may_have_reached_fal_is_uncertain_and_sent_once(
    provider: FalProvider, mock: respx.MockRouter, exc: Exception
) -> None:
    post = mock.post(f"{QUEUE}/{APP}").mock(side_effect=exc)
    with pytest.raises(ProviderSubmitUncertain) as raised:
        await provider.submit(route(), PROMPT, job_id="job-1", kind="image")
    assert raised.value.__cause__ is exc
    assert post.call_count == 1


async def test_a_submit_answered_with_an_unreadable_2xx_is_uncertain(
    provider: FalProvider, mock: respx.MockRouter
) -> None:
    mock.post(f"{QUEUE}/{APP}").respond(200, json={"request_id": "req-1"})
    with pytest.raises(ProviderSubmitUncertain):
        await provider.submit(route(), PROMPT, job_id="job-1", kind="image")


@pytest.mark.parametrize(("started", "error"), [(True, ProviderSubmitUncertain), (False, None)])
async def test_our_submit_deadline_is_uncertain_only_once_the_request_went_out(
    mock: respx.MockRouter, started: bool, error: type[ProviderError] | None
) -> None:
    async def stall(request: httpx.Request) -> httpx.Response:
        if started:
            await request.extensions["trace"]("http11.send_request_headers.started", {})
        await asyncio.sleep(5)
        return accepted()

    mock.post(f"{QUEUE}/{APP}").mock(side_effect=stall)
    fal = FalProvider(key=KEY, queue_url=QUEUE, submit_timeout=0.05)
    try:
        with pytest.raises(ProviderError) as raised:
            await fal.submit(route(), PROMPT, job_id="job-1", kind="image")
    finally:
        await fal.aclose()
    assert type(raised.value) is (error or ProviderTransientError)
    assert isinstance(raised.value.__cause__, TimeoutError)


async def test_our_status_deadline_is_transient(mock: respx.MockRouter) -> None:
    async def stall(request: httpx.Request) -> httpx.Response:
        await asyncio.sleep(5)
        return status({"status": "IN_QUEUE", "queue_position": 0})

    mock.get(URLS["status_url"]).mock(side_effect=stall)
    fal = FalProvider(key=KEY, queue_url=QUEUE, poll_timeout=0.05)
    try:
        with pytest.raises(ProviderTransientError):
            await fal.poll(route(), REF)
    finally:
        await fal.aclose()


@pytest.mark.parametrize("exc", [httpx.ConnectError("refused"), httpx.ReadTimeout("slow")])
async def test_a_transport_error_on_status_is_transient_at_once(
    provider: FalProvider, mock: respx.MockRouter, exc: Exception
) -> None:
    get = mock.get(URLS["status_url"]).mock(side_effect=exc)
    with pytest.raises(ProviderTransientError):
        await provider.poll(route(), REF)
    assert get.call_count == 1


async def test_a_status_read_fal_cannot_be_reached_for_is_tried_on_its_backup_domain(
    mock: respx.MockRouter,
) -> None:
    path = "/fal-ai/flux/requests/req-1/status"
    primary = mock.get(f"https://queue.fal.run{path}").mock(side_effect=httpx.ConnectError("x"))
    backup = mock.get(f"https://queue.falrun.com{path}").mock(
        return_value=status({"status": "IN_PROGRESS"})
    )
    fal = FalProvider(key=KEY)
    try:
        state = await fal.poll(route(), ProviderRef("req-1", {"app": APP}))
    finally:
        await fal.aclose()
    assert state.kind is StateKind.RUNNING
    assert (primary.call_count, backup.call_count) == (1, 1)
    assert backup.calls.last.request.headers["authorization"] == f"Key {KEY}"


# -- cancel --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "response",
    [
        httpx.Response(202, json={"status": "CANCELLATION_REQUESTED"}),
        httpx.Response(400, json={"status": "ALREADY_COMPLETED"}),
        httpx.Response(404, json={"status": "NOT_FOUND"}),
    ],
)
async def test_cancel_puts_the_cancel_url_and_accepts_finished_or_unknown_requests(
    provider: FalProvider, mock: respx.MockRouter, response: httpx.Response
) -> None:
    put = mock.put(URLS["cancel_url"]).mock(return_value=response)
    await provider.cancel(route(), REF)
    assert put.call_count == 1


async def test_a_failed_cancel_is_transient(provider: FalProvider, mock: respx.MockRouter) -> None:
    mock.put(URLS["cancel_url"]).respond(500, json={"detail": "boom"})
    with pytest.raises(ProviderTransientError):
        await provider.cancel(route(), REF)


# -- credentials, loops, closing -----------------------------------------------------------


async def test_without_a_key_routes_are_unavailable_and_nothing_is_sent(
    mock: respx.MockRouter,
) -> None:
    fal = FalProvider(key=None, queue_url=QUEUE)
    assert fal.availability(route()) == (False, "FAL_KEY is not set")
    assert FalProvider(key=KEY, queue_url=QUEUE).availability(route()) == (True, None)
    with pytest.raises(ProviderUnavailable) as raised:
        await fal.submit(route(), PROMPT, job_id="job-1", kind="image")
    assert raised.value.code == "provider_auth"
    with pytest.raises(ProviderUnavailable):
        await fal.poll(route(), REF)
    await fal.aclose()
    assert len(mock.calls) == 0


def test_one_provider_serves_two_event_loops_in_turn() -> None:
    fal = FalProvider(key=KEY, queue_url=QUEUE)
    clients: list[LeanHttpClient] = []

    async def submit_and_poll(close: bool) -> tuple[ProviderRef, StateKind]:
        ref = await fal.submit(route(), PROMPT, job_id="job-1", kind="image")
        state = await fal.poll(route(), ref)
        clients.append(await fal._http())
        if close:
            await fal.aclose()
        return ref, state.kind

    with respx.mock:
        respx.post(f"{QUEUE}/{APP}").mock(return_value=accepted())
        respx.get(URLS["status_url"]).mock(
            return_value=status({"status": "IN_QUEUE", "queue_position": 1})
        )
        first = asyncio.run(submit_and_poll(close=False))
        second = asyncio.run(submit_and_poll(close=True))
    assert first == second == (REF, StateKind.QUEUED)
    assert clients[0] is not clients[1]
    assert clients[1].is_closed


async def test_aclose_closes_the_client_and_a_later_call_makes_a_new_one(
    mock: respx.MockRouter,
) -> None:
    mock.post(f"{QUEUE}/{APP}").mock(return_value=accepted())
    fal = FalProvider(key=KEY, queue_url=QUEUE)
    await fal.submit(route(), PROMPT, job_id="job-1", kind="image")
    first = await fal._http()
    await fal.aclose()
    assert first.is_closed
    await fal.submit(route(), PROMPT, job_id="job-2", kind="image")
    second = await fal._http()
    assert second is not first and not second.is_closed
    await fal.aclose()
    assert second.is_closed


# -- wait ----------------------------------------------------------------------------------


async def test_wait_reads_every_request_on_one_timer_and_starts_over_after_an_end(
    mock: respx.MockRouter,
) -> None:
    fal = FalProvider(key=KEY, queue_url=QUEUE, poll_interval=0.04)
    reads = mock.get(path__regex=r"/status$").mock(
        return_value=status({"status": "IN_PROGRESS", "logs": []})
    )

    def ref(request_id: str) -> ProviderRef:
        return ProviderRef(request_id, {"app": APP})

    try:
        states = await asyncio.gather(*(fal.wait(route(), ref(f"r{n}"), 30.0) for n in range(20)))
        assert [s.kind for s in states] == [StateKind.RUNNING] * 20
        assert reads.call_count == 20 and fal.poller.fires <= 2
        assert fal.poller.next_delay("r1") == pytest.approx(0.015)  # its schedule moved on
        reads.mock(
            return_value=completed(error="Request was cancelled", error_type="request_cancelled")
        )
        assert (await fal.wait(route(), REF, 30.0)).kind is StateKind.CANCELLED
        assert fal.poller.next_delay(REF.request_id) == pytest.approx(0.01)  # starts over
    finally:
        await fal.aclose()


# -- the call gate --------------------------------------------------------------------------


async def test_no_more_than_max_calls_status_polls_are_in_flight_at_once(
    mock: respx.MockRouter,
) -> None:
    """Thousands of jobs polling at once reach the provider a few at a time (the rest wait
    their turn, outside their timeout), and every one gets its answer."""
    fal = FalProvider(key=KEY, queue_url=QUEUE, max_calls=4)  # 1 for submits, 3 for the rest
    in_flight = peak = 0

    async def slow_status(request: httpx.Request) -> httpx.Response:
        nonlocal in_flight, peak
        in_flight += 1
        peak = max(peak, in_flight)
        await asyncio.sleep(0.02)
        in_flight -= 1
        return status({"status": "IN_PROGRESS"})

    mock.get(URLS["status_url"]).mock(side_effect=slow_status)
    try:
        states = await asyncio.gather(*(fal.poll(route(), REF) for _ in range(20)))
    finally:
        await fal.aclose()

    assert [s.kind for s in states] == [StateKind.RUNNING] * 20
    assert peak == 3


def test_a_gate_that_lets_nothing_through_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="at least 2"):
        FalProvider(key=KEY, queue_url=QUEUE, max_calls=1)


async def test_a_submit_does_not_wait_behind_status_polls(mock: respx.MockRouter) -> None:
    fal = FalProvider(key=KEY, queue_url=QUEUE, max_calls=4)
    release = asyncio.Event()

    async def stuck_status(request: httpx.Request) -> httpx.Response:
        await release.wait()
        return status({"status": "IN_PROGRESS"})

    mock.get(URLS["status_url"]).mock(side_effect=stuck_status)
    mock.post(f"{QUEUE}/{APP}").mock(return_value=accepted())
    try:
        polls = [asyncio.ensure_future(fal.poll(route(), REF)) for _ in range(10)]
        await asyncio.sleep(0.05)  # every poll slot is taken, the rest of the polls queue
        ref = await asyncio.wait_for(fal.submit(route(), PROMPT, job_id="j", kind="image"), 2)
        assert ref.request_id == "req-1"
        release.set()
        await asyncio.gather(*polls)
    finally:
        release.set()
        await fal.aclose()
