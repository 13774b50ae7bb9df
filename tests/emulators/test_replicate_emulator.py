from __future__ import annotations

import asyncio
import io
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from PIL import Image
from replicate.client import Client
from replicate.exceptions import ReplicateError
from replicate.prediction import Prediction

from tests.emulators import Behaviour, ReplicateEmulator, create_replicate_app, serve
from tests.emulators.conftest import ManualClock
from tests.emulators.replicate import parse_duration, parse_prefer_wait
from tests.emulators.replicate_state import tqdm_line
from tests.emulators.video import FRAMES, SIZE, probe

TOKEN = {"Authorization": "Bearer test"}
BASE = "https://api.replicate.com"
MODEL_URL = "/v1/models/black-forest-labs/flux-schnell/predictions"


def emulator_of(app: Any) -> ReplicateEmulator:
    state: ReplicateEmulator = app.state.emulator
    return state


@pytest.fixture
async def rep(
    clock: ManualClock,
) -> AsyncIterator[tuple[httpx.AsyncClient, ReplicateEmulator]]:
    """An in-process emulator on a manual clock: 10 s starting, then a 10 s run."""
    app = create_replicate_app(Behaviour(queue_time=10, latency=10), clock=clock)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url=BASE, headers=TOKEN) as client:
        yield client, emulator_of(app)


async def create(client: httpx.AsyncClient, url: str = MODEL_URL, **body: Any) -> Any:
    response = await client.post(url, json={"input": {"prompt": "a cat"}, **body})
    assert response.status_code == 201, response.text
    return response.json()


async def test_requests_without_a_token_get_an_rfc_7807_401(
    rep: tuple[httpx.AsyncClient, ReplicateEmulator],
) -> None:
    client, state = rep
    for headers in (
        {"Authorization": ""},
        {"Authorization": "Bearer "},
        {"Authorization": "Key x"},
    ):
        response = await client.post(MODEL_URL, json={"input": {}}, headers=headers)
        assert response.status_code == 401
        assert set(response.json()) == {"title", "detail", "status"}
    assert (await client.get("/v1/predictions/x", headers={"Authorization": ""})).status_code == 401
    assert state.submit_count(accepted_only=False) == 0


async def test_prediction_goes_from_starting_through_processing_to_succeeded(
    rep: tuple[httpx.AsyncClient, ReplicateEmulator], clock: ManualClock
) -> None:
    client, state = rep
    created = await create(client, input={"prompt": "a cat", "num_outputs": 2})
    assert created["status"] == "starting"
    assert created["model"] == "black-forest-labs/flux-schnell"
    assert created["logs"] == "" and created["output"] is None and created["started_at"] is None
    urls = created["urls"]
    assert urls["get"] == f"{BASE}/v1/predictions/{created['id']}"
    assert urls["cancel"] == urls["get"] + "/cancel" and urls["stream"] == urls["get"] + "/stream"
    Prediction(**created)  # the client's own model accepts it

    clock.advance(14.5)  # 4.5 s into a 10 s run of 20 steps
    processing = (await client.get(urls["get"])).json()
    assert processing["status"] == "processing" and processing["started_at"]
    assert " 45%|████▌     | 9/20 [00:04<00:06,  2.00it/s]" in processing["logs"]
    progress = Prediction(**processing).progress
    assert progress is not None and (progress.current, progress.total) == (9, 20)

    clock.advance(6)
    done = (await client.get(urls["get"])).json()
    assert done["status"] == "succeeded" and done["completed_at"]
    assert done["metrics"] == {"predict_time": 10.0, "total_time": 20.0}
    assert len(done["output"]) == 2
    image = await client.get(done["output"][0])
    assert Image.open(io.BytesIO(image.content)).size == (64, 64)
    assert state.submit_count("black-forest-labs/flux-schnell") == 1


async def test_a_video_model_outputs_one_playable_mp4(
    rep: tuple[httpx.AsyncClient, ReplicateEmulator], clock: ManualClock
) -> None:
    client, _ = rep
    created = await create(client, "/v1/models/minimax/video-01/predictions")
    clock.advance(30)
    done = (await client.get(created["urls"]["get"])).json()
    assert done["status"] == "succeeded" and isinstance(done["output"], str)
    file = await client.get(done["output"])
    assert file.headers["content-type"] == "video/mp4"
    clip = probe(file.content)
    assert (clip.size, clip.frames) == (SIZE, FRAMES)


async def test_create_with_a_version_and_with_a_deployment(
    rep: tuple[httpx.AsyncClient, ReplicateEmulator],
) -> None:
    client, state = rep
    by_version = await create(client, "/v1/predictions", version="acme/video-gen:abc123")
    assert (by_version["model"], by_version["version"]) == ("acme/video-gen", "abc123")
    bare = await create(client, "/v1/predictions", version="f00d")
    assert bare["version"] == "f00d"
    deployed = await create(client, "/v1/deployments/acme/flux-prod/predictions")
    assert deployed["model"] == "acme/flux-prod"
    assert state.log.submits_accepted == {
        "acme/video-gen:abc123": 1,
        "f00d": 1,
        "deployments/acme/flux-prod": 1,
    }


async def test_validation_errors_are_rfc_7807_422s(
    rep: tuple[httpx.AsyncClient, ReplicateEmulator],
) -> None:
    client, state = rep
    state.configure(required_inputs=["prompt"])
    no_version = await client.post("/v1/predictions", json={"input": {"prompt": "x"}})
    no_input = await client.post(MODEL_URL, json={"prompt": "x"})
    no_prompt = await client.post(MODEL_URL, json={"input": {"width": 5}})
    not_json = await client.post(MODEL_URL, content=b"{", headers={"content-type": "text/plain"})
    for response in (no_version, no_input, no_prompt, not_json):
        assert response.status_code == 422
        assert response.json()["title"] == "Input validation failed"
    assert no_prompt.json()["invalid_fields"][0]["field"] == "input.prompt"
    assert state.submit_count() == 0 and state.submit_count(accepted_only=False) == 4


async def test_prefer_wait_holds_the_answer_until_the_prediction_is_over() -> None:
    app = create_replicate_app(Behaviour(latency=0.05))
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url=BASE, headers=TOKEN) as client:
        waited = await client.post(MODEL_URL, json={"input": {}}, headers={"Prefer": "wait=5"})
        assert waited.headers["preference-applied"] == "wait=5"
        assert waited.json()["status"] == "succeeded"
        short = await client.post(MODEL_URL, json={"input": {}}, headers={"Prefer": "wait=1"})
        assert short.json()["status"] == "succeeded"


async def test_cancel_stops_a_prediction_and_leaves_a_finished_one_alone(
    rep: tuple[httpx.AsyncClient, ReplicateEmulator], clock: ManualClock
) -> None:
    client, _ = rep
    running = await create(client)
    clock.advance(12)
    cancelled = await client.post(running["urls"]["cancel"])
    assert cancelled.status_code == 200
    assert cancelled.json()["status"] == "canceled"
    assert cancelled.json()["metrics"]["predict_time"] == 2.0

    finished = await create(client)
    clock.advance(30)
    unchanged = await client.post(finished["urls"]["cancel"])
    assert unchanged.json()["status"] == "succeeded"
    assert (await client.post("/v1/predictions/nope/cancel")).status_code == 404
    assert (await client.get("/v1/predictions/nope")).json()["title"] == "Not found"


async def test_failed_run_reports_the_error_and_a_traceback(
    rep: tuple[httpx.AsyncClient, ReplicateEmulator], clock: ManualClock
) -> None:
    client, state = rep
    state.configure(run_outcomes=["fail"], run_error="NSFW content detected")
    failed = await create(client)
    clock.advance(30)
    body = (await client.get(failed["urls"]["get"])).json()
    assert (body["status"], body["error"], body["output"]) == (
        "failed",
        "NSFW content detected",
        None,
    )
    assert body["logs"].rstrip().endswith("RuntimeError: NSFW content detected")
    assert (await client.get((await create(client))["urls"]["get"])).json()["error"] is None


async def test_cancel_after_aborts_a_queued_prediction_and_cancels_a_running_one(
    rep: tuple[httpx.AsyncClient, ReplicateEmulator], clock: ManualClock
) -> None:
    client, _ = rep
    queued = await client.post(MODEL_URL, json={"input": {}}, headers={"Cancel-After": "2s"})
    running = await client.post(MODEL_URL, json={"input": {}}, headers={"Cancel-After": "15"})
    clock.advance(16)
    assert (await client.get(queued.json()["urls"]["get"])).json()["status"] == "aborted"
    assert (await client.get(running.json()["urls"]["get"])).json()["status"] == "canceled"
    bad = await client.post(MODEL_URL, json={"input": {}}, headers={"Cancel-After": "soon"})
    assert bad.status_code == 400


async def test_rate_limit_throttles_creates_with_retry_after(
    rep: tuple[httpx.AsyncClient, ReplicateEmulator], clock: ManualClock
) -> None:
    client, state = rep
    state.configure(rate_limit_per_minute=2)
    await create(client)
    await create(client)
    throttled = await client.post(MODEL_URL, json={"input": {}})
    assert throttled.status_code == 429
    assert throttled.headers["retry-after"] == "30"
    assert throttled.json()["detail"] == (
        "Request was throttled. Expected available in 30 second(s)."
    )
    clock.advance(30)
    await create(client)


async def test_scripted_answers_for_creates_and_polls(
    rep: tuple[httpx.AsyncClient, ReplicateEmulator],
) -> None:
    client, state = rep
    state.script("submit", {"status": 429, "retry_after": 7}, 402, 403, "malformed", "ok")
    state.script("submit:acme/other", 500)
    answers = [await client.post(MODEL_URL, json={"input": {}}) for _ in range(5)]
    assert [a.status_code for a in answers] == [429, 402, 403, 200, 201]
    assert answers[0].json()["detail"].endswith("in 7 second(s).")
    assert answers[1].json()["title"] == "Insufficient credit"
    other = await client.post("/v1/models/acme/other/predictions", json={"input": {}})
    assert other.status_code == 500

    state.script("status", 503, {"status": 422, "message": "bad"})
    url = answers[4].json()["urls"]["get"]
    assert (await client.get(url)).status_code == 503
    assert (await client.get(url)).json()["detail"] == "bad"
    assert (await client.get(url)).status_code == 200
    assert [e.scripted for e in state.requests(route="status")] == ["error", "error", None]


async def test_list_pages_newest_first_with_cursor_urls(
    rep: tuple[httpx.AsyncClient, ReplicateEmulator],
) -> None:
    client, state = rep
    state.configure(page_size=2)
    ids = [(await create(client))["id"] for _ in range(5)]
    seen: list[str] = []
    url: str | None = "/v1/predictions"
    while url:
        page = (await client.get(url)).json()
        seen += [p["id"] for p in page["results"]]
        url = page["next"]
    assert seen == ids[::-1]
    assert (await client.get("/v1/predictions?cursor=x")).status_code == 400


async def test_stream_sends_outputs_then_done() -> None:
    app = create_replicate_app(Behaviour(latency=0.05))
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url=BASE, headers=TOKEN) as client:
        created = await create(client)
        stream = await client.get(created["urls"]["stream"])
    assert stream.headers["content-type"].startswith("text/event-stream")
    events = [block.split("\n")[0] for block in stream.text.strip().split("\n\n")]
    assert events == ["event: output", "event: done"]


async def test_control_endpoints_reset_and_report(
    rep: tuple[httpx.AsyncClient, ReplicateEmulator],
) -> None:
    client, state = rep
    await client.post("/_emulator/behaviour", json={"fail_runs": True, "output": "video"})
    created = await create(client)
    assert state.predictions[created["id"]].error is not None
    log = await client.get("/_emulator/requests", params={"app": "black-forest-labs/flux-schnell"})
    [entry] = log.json()["requests"]
    assert entry["request_id"] == created["id"] and entry["body"] == {"input": {"prompt": "a cat"}}
    assert entry["headers"]["authorization"] == "Bearer test"
    assert (await client.post("/_emulator/behaviour", json={"output": "gif"})).status_code == 400
    await client.post("/_emulator/reset")
    assert not state.predictions and not state.behaviour.fail_runs
    assert (await client.get("/v1/predictions")).json()["results"] == []


def test_header_parsers_and_progress_lines() -> None:
    assert parse_duration("1h30m15s") == 5415
    assert parse_duration("2.5") == 2.5 and parse_duration("5m") == 300
    with pytest.raises(ValueError):
        parse_duration("")
    assert parse_prefer_wait("wait=10") == 10
    assert parse_prefer_wait("respond-async, wait") == 60
    assert parse_prefer_wait("wait=600") == 60 and parse_prefer_wait(None) is None
    assert tqdm_line(0, 20, 10) == "  0%|          | 0/20 [00:00<00:10,  2.00it/s]"
    assert tqdm_line(20, 20, 10) == "100%|██████████| 20/20 [00:10<00:00,  2.00it/s]"


# --- the replicate client against a real server --------------------------------------


@pytest.fixture
async def rep_server() -> AsyncIterator[tuple[Client, ReplicateEmulator]]:
    app = create_replicate_app(Behaviour(latency=0.3))
    async with serve(app) as base_url:
        client = Client(api_token="test", base_url=base_url)
        client.poll_interval = 0.05
        yield client, emulator_of(app)
        await client._async_client.aclose()


async def test_replicate_client_runs_a_model_with_wait(
    rep_server: tuple[Client, ReplicateEmulator],
) -> None:
    client, state = rep_server
    prediction = await client.models.predictions.async_create(
        model="black-forest-labs/flux-schnell",
        input={"prompt": "a cat", "width": 48, "height": 24},
        wait=5,
    )
    assert prediction.status == "succeeded"
    assert prediction.metrics is not None and prediction.metrics["predict_time"] > 0
    [entry] = state.requests(route="submit")
    assert entry.headers["prefer"] == "wait=5"
    assert isinstance(prediction.output, list)
    async with httpx.AsyncClient() as plain:
        image = await plain.get(prediction.output[0])
    assert Image.open(io.BytesIO(image.content)).size == (48, 24)


async def test_replicate_client_polls_a_version_prediction_and_reads_progress(
    rep_server: tuple[Client, ReplicateEmulator],
) -> None:
    client, state = rep_server
    state.configure(latency=0.6)
    prediction = await client.predictions.async_create(version="abc123", input={"prompt": "a"})
    assert prediction.status == "processing" and prediction.version == "abc123"
    await asyncio.sleep(0.35)
    midway = await client.predictions.async_get(prediction.id)
    assert midway.status == "processing"
    assert midway.progress is not None and 0 < midway.progress.percentage < 1
    await prediction.async_wait()
    done = await client.predictions.async_get(prediction.id)
    assert done.status == "succeeded" and done.progress is not None
    assert done.progress.percentage == 1.0


async def test_replicate_client_uses_deployments_cancel_and_list(
    rep_server: tuple[Client, ReplicateEmulator],
) -> None:
    client, state = rep_server
    state.configure(queue_time=5)
    prediction = await client.deployments.predictions.async_create(
        deployment="acme/flux-prod", input={"prompt": "a cat"}
    )
    cancelled = await client.predictions.async_cancel(prediction.id)
    assert cancelled.status == "canceled"
    page = await client.predictions.async_list()
    assert [p.id for p in page] == [prediction.id] and page.next is None
    assert state.submit_count("deployments/acme/flux-prod") == 1


async def test_replicate_client_errors(
    rep_server: tuple[Client, ReplicateEmulator],
) -> None:
    client, state = rep_server
    state.script("submit", {"status": 429, "retry_after": 0})
    with pytest.raises(ReplicateError) as throttled:  # POST is never retried
        await client.models.predictions.async_create(model="a/b", input={})
    assert throttled.value.status == 429

    state.configure(required_inputs=["prompt"])
    with pytest.raises(ReplicateError) as invalid:
        await client.models.predictions.async_create(model="a/b", input={})
    assert (invalid.value.status, invalid.value.title) == (422, "Input validation failed")
    assert invalid.value.detail is not None and "prompt" in invalid.value.detail

    state.configure(required_inputs=[], fail_runs=True, run_error="boom", latency=0)
    prediction = await client.models.predictions.async_create(model="a/b", input={})
    state.script("status", {"status": 503, "retry_after": 0})  # GET is retried by the client
    fetched = await client.predictions.async_get(prediction.id)
    assert (fetched.status, fetched.error) == ("failed", "boom")
    assert [e.status for e in state.requests(route="status")] == [503, 200]
