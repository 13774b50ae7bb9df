from __future__ import annotations

import asyncio
import io
import socket
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import fal_client
import fal_client.client
import httpx
import pytest
from PIL import Image

from tests.emulators import Behaviour, FalEmulator, create_fal_app, serve
from tests.emulators.conftest import ManualClock
from tests.emulators.video import FRAMES, SIZE, probe

KEY = {"Authorization": "Key test"}
REPO_ROOT = Path(__file__).resolve().parents[2]
BASE = "https://queue.fal.run"


def emulator_of(app: Any) -> FalEmulator:
    state: FalEmulator = app.state.emulator
    return state


@pytest.fixture
async def fal(clock: ManualClock) -> AsyncIterator[tuple[httpx.AsyncClient, FalEmulator]]:
    """An in-process emulator on a manual clock: 10 s in the queue from position 4, 10 s run."""
    app = create_fal_app(
        Behaviour(queue_time=10, queue_position=4, latency=10, progress_steps=5), clock=clock
    )
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url=BASE, headers=KEY) as client:
        yield client, emulator_of(app)


async def submit(
    client: httpx.AsyncClient, body: Any = None, path: str = "/fal-ai/flux/dev"
) -> Any:
    response = await client.post(path, json={"prompt": "a cat"} if body is None else body)
    assert response.status_code == 200, response.text
    return response.json()


async def test_submit_without_a_key_is_unauthorised(
    fal: tuple[httpx.AsyncClient, FalEmulator],
) -> None:
    client, state = fal
    for headers in (
        {"Authorization": ""},
        {"Authorization": "Key "},
        {"Authorization": "Bearer x"},
    ):
        response = await client.post("/fal-ai/flux/dev", json={}, headers=headers)
        assert response.status_code == 401
        assert "detail" in response.json()
    assert state.submit_count() == 0
    assert [e.status for e in state.requests(route="submit")] == [401, 401, 401]
    submitted = await submit(client)
    for url in (submitted["status_url"], submitted["response_url"]):
        assert (await client.get(url, headers={"Authorization": ""})).status_code == 401
    assert (
        await client.put(submitted["cancel_url"], headers={"Authorization": ""})
    ).status_code == 401


async def test_submit_answers_urls_without_the_sub_path_and_records_headers(
    fal: tuple[httpx.AsyncClient, FalEmulator],
) -> None:
    client, state = fal
    headers = {
        "X-Fal-Queue-Priority": "low",
        "X-Fal-Request-Timeout": "30",
        "X-Fal-Runner-Hint": "runner-7",
    }
    response = await client.post("/fal-ai/flux/dev", json={"prompt": "a cat"}, headers=headers)
    data = response.json()
    request_id = data["request_id"]
    base = f"{BASE}/fal-ai/flux/requests/{request_id}"
    assert data == {
        "request_id": request_id,
        "response_url": base,
        "status_url": f"{base}/status",
        "cancel_url": f"{base}/cancel",
        "queue_position": 4,
    }
    [entry] = state.requests(route="submit")
    assert entry.request_id == request_id and entry.app == "fal-ai/flux/dev"
    assert entry.body == {"prompt": "a cat"}
    assert entry.headers["x-fal-queue-priority"] == "low"
    assert entry.headers["x-fal-request-timeout"] == "30"
    assert entry.headers["x-fal-runner-hint"] == "runner-7"
    assert state.submit_count("fal-ai/flux/dev") == 1
    assert state.jobs[request_id].headers["x-fal-runner-hint"] == "runner-7"


async def test_status_walks_from_queue_through_progress_to_completed(
    fal: tuple[httpx.AsyncClient, FalEmulator], clock: ManualClock
) -> None:
    client, _ = fal
    status_url = (await submit(client))["status_url"]

    queued = await client.get(status_url)
    assert queued.status_code == 202
    assert queued.json()["status"] == "IN_QUEUE" and queued.json()["queue_position"] == 4
    clock.advance(5)
    assert (await client.get(status_url)).json()["queue_position"] == 2

    clock.advance(9)  # 4 s into a 10 s run of 5 steps
    running = await client.get(status_url, params={"logs": "1"})
    assert running.status_code == 202
    body = running.json()
    assert body["status"] == "IN_PROGRESS"
    assert [log["message"] for log in body["logs"]] == [
        "Starting generation",
        "Step 1/5",
        "Step 2/5",
    ]
    assert set(body["logs"][0]) == {"message", "level", "source", "timestamp"}
    without_logs = await client.get(status_url, params={"logs": "0"})
    assert without_logs.json()["logs"] is None

    clock.advance(7)
    done = await client.get(status_url, params={"logs": "true"})
    assert done.status_code == 200
    body = done.json()
    assert body["status"] == "COMPLETED"
    assert body["metrics"] == {"inference_time": 10.0}
    assert body["logs"][-1]["message"] == "Generation finished"
    assert "error" not in body


async def test_result_is_an_image_the_emulator_serves(
    fal: tuple[httpx.AsyncClient, FalEmulator], clock: ManualClock
) -> None:
    client, _ = fal
    body = {
        "prompt": "a cat",
        "image_size": {"width": 32, "height": 16},
        "num_images": 2,
        "seed": 7,
    }
    response_url = (await submit(client, body))["response_url"]
    early = await client.get(response_url)
    assert early.status_code == 400

    clock.advance(30)
    result = (await client.get(response_url)).json()
    assert result["seed"] == 7 and result["prompt"] == "a cat"
    assert len(result["images"]) == 2
    image = result["images"][0]
    assert (image["width"], image["height"], image["content_type"]) == (32, 16, "image/png")
    assert image["url"].startswith(f"{BASE}/files/")
    file = await client.get(image["url"])
    assert file.headers["content-type"] == "image/png"
    assert Image.open(io.BytesIO(file.content)).size == (32, 16)


async def test_named_image_size_and_default_size(
    fal: tuple[httpx.AsyncClient, FalEmulator], clock: ManualClock
) -> None:
    client, _ = fal
    named = await submit(client, {"prompt": "x", "image_size": "landscape_4_3"})
    plain = await submit(client, {"prompt": "x"})
    clock.advance(30)
    named_image = (await client.get(named["response_url"])).json()["images"][0]
    plain_image = (await client.get(plain["response_url"])).json()["images"][0]
    assert (named_image["width"], named_image["height"]) == (1024, 768)
    assert (plain_image["width"], plain_image["height"]) == (64, 64)


async def test_video_app_returns_a_playable_mp4(
    fal: tuple[httpx.AsyncClient, FalEmulator], clock: ManualClock
) -> None:
    client, _ = fal
    submitted = await submit(client, path="/fal-ai/kling-video/v2/text-to-video")
    assert "/fal-ai/kling-video/requests/" in submitted["response_url"]
    clock.advance(30)
    video = (await client.get(submitted["response_url"])).json()["video"]
    file = await client.get(video["url"])
    assert file.headers["content-type"] == "video/mp4"
    assert len(file.content) == video["file_size"]
    clip = probe(file.content)
    assert (clip.size, clip.frames) == (SIZE, FRAMES)


async def test_failed_run_completes_with_error_and_result_replays_it(
    fal: tuple[httpx.AsyncClient, FalEmulator], clock: ManualClock
) -> None:
    client, state = fal
    state.configure(run_outcomes=["fail", "ok"], run_error="boom", run_error_type="runner_crash")
    failed = await submit(client)
    succeeded = await submit(client)
    clock.advance(30)

    status = (await client.get(failed["status_url"])).json()
    assert status["status"] == "COMPLETED"
    assert (status["error"], status["error_type"]) == ("boom", "runner_crash")
    result = await client.get(failed["response_url"])
    assert result.status_code == 500
    assert result.headers["x-fal-error-type"] == "runner_crash"
    assert result.json()["detail"] == "boom"
    assert (await client.get(succeeded["response_url"])).status_code == 200


async def test_missing_required_input_fails_the_run_with_a_422(
    fal: tuple[httpx.AsyncClient, FalEmulator], clock: ManualClock
) -> None:
    client, state = fal
    state.configure(required_inputs=["prompt"])
    submitted = await submit(client, {"image_size": "square"})
    clock.advance(30)
    result = await client.get(submitted["response_url"])
    assert result.status_code == 422
    assert result.json()["detail"][0]["loc"] == ["body", "prompt"]
    assert "error" in (await client.get(submitted["status_url"])).json()


async def test_cancel_of_queued_request_ends_it_cancelled(
    fal: tuple[httpx.AsyncClient, FalEmulator], clock: ManualClock
) -> None:
    client, _ = fal
    submitted = await submit(client)
    cancelled = await client.put(submitted["cancel_url"])
    assert (cancelled.status_code, cancelled.json()) == (202, {"status": "CANCELLATION_REQUESTED"})

    status = (await client.get(submitted["status_url"])).json()
    assert status["status"] == "COMPLETED"
    assert status["error_type"] == "request_cancelled"
    assert status["metrics"] == {}
    again = await client.put(submitted["cancel_url"])
    assert (again.status_code, again.json()) == (400, {"status": "ALREADY_COMPLETED"})
    result = await client.get(submitted["response_url"])
    assert result.headers["x-fal-error-type"] == "request_cancelled"


async def test_cancel_of_completed_and_unknown_requests_is_rejected(
    fal: tuple[httpx.AsyncClient, FalEmulator], clock: ManualClock
) -> None:
    client, _ = fal
    submitted = await submit(client)
    clock.advance(30)
    assert (await client.put(submitted["cancel_url"])).status_code == 400
    unknown = await client.put("/fal-ai/flux/requests/nope/cancel")
    assert (unknown.status_code, unknown.json()) == (404, {"status": "NOT_FOUND"})
    assert (await client.get("/fal-ai/flux/requests/nope/status")).status_code == 404
    other_app = submitted["status_url"].replace("/fal-ai/flux/", "/fal-ai/other/")
    assert (await client.get(other_app)).status_code == 404


async def test_running_app_may_ignore_the_cancel_signal(
    fal: tuple[httpx.AsyncClient, FalEmulator], clock: ManualClock
) -> None:
    client, state = fal
    state.configure(cancel_stops_running=False)
    submitted = await submit(client)
    clock.advance(12)
    assert (await client.put(submitted["cancel_url"])).status_code == 202
    clock.advance(10)
    assert (await client.get(submitted["response_url"])).status_code == 200
    assert state.jobs[submitted["request_id"]].timeline.cancel_requested


async def test_start_timeout_expires_a_request_still_queued(
    fal: tuple[httpx.AsyncClient, FalEmulator], clock: ManualClock
) -> None:
    client, _ = fal
    response = await client.post(
        "/fal-ai/flux/dev", json={"prompt": "x"}, headers={"X-Fal-Request-Timeout": "3"}
    )
    submitted = response.json()
    clock.advance(4)
    status = (await client.get(submitted["status_url"])).json()
    assert (status["status"], status["error_type"]) == ("COMPLETED", "request_timeout")
    result = await client.get(submitted["response_url"])
    assert result.status_code == 504
    assert result.headers["x-fal-request-timeout-type"] == "user"


async def test_scripted_submit_answers_are_played_in_order(
    fal: tuple[httpx.AsyncClient, FalEmulator],
) -> None:
    client, state = fal
    state.script("submit", 500, {"status": 429, "retry_after": 3}, 402, "malformed")
    state.script("submit", "wrong_shape", {"status": 422, "message": "prompt too long"}, "ok")
    answers = [await client.post("/fal-ai/flux/dev", json={"prompt": "x"}) for _ in range(8)]

    assert [a.status_code for a in answers] == [500, 429, 402, 200, 200, 422, 200, 200]
    assert answers[1].headers["retry-after"] == "3"
    with pytest.raises(ValueError):
        answers[3].json()
    assert answers[4].json() == {"unexpected": "shape"}
    assert answers[5].json()["detail"][0]["msg"] == "prompt too long"
    assert "request_id" in answers[6].json() and "request_id" in answers[7].json()
    assert state.submit_count("fal-ai/flux/dev") == 2
    assert state.submit_count("fal-ai/flux/dev", accepted_only=False) == 8
    assert [e.scripted for e in state.requests(route="submit")][:3] == ["error"] * 3


async def test_scripts_narrowed_to_an_app_and_to_status_polls(
    fal: tuple[httpx.AsyncClient, FalEmulator],
) -> None:
    client, state = fal
    state.script("submit:fal-ai/other", 503)
    state.script("status", 503, "ok")
    submitted = await submit(client)
    assert (await client.post("/fal-ai/other", json={})).status_code == 503
    assert (await client.get(submitted["status_url"])).status_code == 503
    assert (await client.get(submitted["status_url"])).status_code == 202


async def test_scripted_timeout_hangs_and_then_creates_the_request(
    fal: tuple[httpx.AsyncClient, FalEmulator],
) -> None:
    client, state = fal
    state.script("submit", {"kind": "timeout", "hang_seconds": 0.05})
    started = asyncio.get_running_loop().time()
    await submit(client)
    assert asyncio.get_running_loop().time() - started >= 0.05
    assert state.submit_count() == 1
    assert state.requests(route="submit")[0].scripted == "timeout"


async def test_http_control_endpoints(fal: tuple[httpx.AsyncClient, FalEmulator]) -> None:
    client, state = fal
    response = await client.post(
        "/_emulator/behaviour", json={"latency": 2.5, "scripts": {"submit": [503]}}
    )
    assert response.status_code == 200
    assert response.json()["latency"] == 2.5
    assert response.json()["scripts"]["submit"] == [{"kind": "error", "status": 503}]
    assert state.behaviour.latency == 2.5
    added = await client.post("/_emulator/script", json={"route": "submit", "responses": ["ok"]})
    assert len(added.json()["scripts"]["submit"]) == 2

    assert (await client.post("/fal-ai/flux/dev", json={})).status_code == 503
    await submit(client)
    log = (await client.get("/_emulator/requests", params={"route": "submit"})).json()
    assert [r["status"] for r in log["requests"]] == [503, 200]
    assert log["submits_accepted"] == {"fal-ai/flux/dev": 1}
    assert log["submits_received"] == {"fal-ai/flux/dev": 2}

    bad = await client.post("/_emulator/behaviour", json={"latency": -1, "nope": 1})
    assert bad.status_code == 400
    assert (await client.post("/_emulator/behaviour", json={"latency": -1})).status_code == 400
    assert (
        await client.post("/_emulator/script", json={"route": "submit", "responses": [99]})
    ).status_code == 400

    assert (await client.post("/_emulator/reset")).json() == {"ok": True}
    assert state.behaviour.latency == 10 and not state.jobs and not state.requests()
    assert (await client.get("/_emulator/health")).json() == {"ok": True, "emulator": "fal"}


# --- fal-client against a real server -------------------------------------------------


@pytest.fixture
async def fal_server(monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[FalEmulator]:
    app = create_fal_app(Behaviour(latency=0.3))
    async with serve(app) as base_url:
        monkeypatch.setattr(fal_client.client, "QUEUE_URL_FORMAT", f"{base_url}/")
        monkeypatch.setattr(fal_client.client, "RUN_URL_FORMAT", f"{base_url}/")
        yield emulator_of(app)


@pytest.fixture
async def sdk() -> AsyncIterator[fal_client.AsyncClient]:
    client = fal_client.AsyncClient(key="test")
    yield client
    http = await client._client
    await http.aclose()


async def test_fal_client_submits_polls_with_logs_and_gets_the_result(
    fal_server: FalEmulator, sdk: fal_client.AsyncClient
) -> None:
    handle = await sdk.submit(
        "fal-ai/flux/dev",
        {"prompt": "a cat", "image_size": "square"},
        priority="low",
        hint="runner-1",
        start_timeout=30,
    )
    assert handle.status_url.endswith(f"/fal-ai/flux/requests/{handle.request_id}/status")
    first = await handle.status(with_logs=True)
    assert isinstance(first, fal_client.InProgress | fal_client.Queued)

    result = await handle.get(interval=0.05)
    assert result["images"][0]["width"] == 512
    status = await sdk.status("fal-ai/flux/dev", handle.request_id, with_logs=True)
    assert isinstance(status, fal_client.Completed)
    assert status.error is None and status.metrics["inference_time"] == pytest.approx(0.3)
    assert status.logs and status.logs[-1]["message"] == "Generation finished"
    assert await sdk.result("fal-ai/flux/dev", handle.request_id) == result

    [entry] = fal_server.requests(route="submit")
    assert entry.headers["x-fal-queue-priority"] == "low"
    assert entry.headers["x-fal-runner-hint"] == "runner-1"
    assert float(entry.headers["x-fal-request-timeout"]) == 30
    assert entry.headers["authorization"] == "Key test"
    async with httpx.AsyncClient() as plain:
        image = await plain.get(result["images"][0]["url"])
    assert Image.open(io.BytesIO(image.content)).size == (512, 512)


async def test_fal_client_cancels_and_sees_the_request_end(
    fal_server: FalEmulator, sdk: fal_client.AsyncClient
) -> None:
    fal_server.configure(queue_time=5, queue_position=3)
    handle = await sdk.submit("fal-ai/flux/dev", {"prompt": "a cat"})
    queued = await handle.status()
    assert queued == fal_client.Queued(position=3)
    await handle.cancel()
    status = await handle.status()
    assert isinstance(status, fal_client.Completed)
    assert status.error_type == "request_cancelled"
    with pytest.raises(fal_client.client.FalClientHTTPError) as raised:
        await sdk.cancel("fal-ai/flux/dev", handle.request_id)
    assert raised.value.status_code == 400


async def test_fal_client_sees_a_failed_run(
    fal_server: FalEmulator, sdk: fal_client.AsyncClient
) -> None:
    fal_server.configure(fail_runs=True, latency=0, run_error="out of memory")
    handle = await sdk.submit("fal-ai/flux/dev", {"prompt": "a cat"})
    status = await handle.status()
    assert isinstance(status, fal_client.Completed)
    assert (status.error, status.error_type) == ("out of memory", "internal_error")
    with pytest.raises(fal_client.client.FalClientHTTPError) as raised:
        await handle.get()
    assert raised.value.status_code == 500
    assert raised.value.error_type == "internal_error"
    assert raised.value.message == "out of memory"


async def test_fal_client_retries_a_429_submit_itself(
    fal_server: FalEmulator, sdk: fal_client.AsyncClient
) -> None:
    fal_server.script("submit", 429, 429)
    handle = await sdk.submit("fal-ai/flux/dev", {"prompt": "a cat"})
    assert handle.request_id in fal_server.jobs
    assert fal_server.submit_count(accepted_only=False) == 3
    assert fal_server.submit_count() == 1


async def test_fal_client_retries_an_ingress_error_page(
    fal_server: FalEmulator, sdk: fal_client.AsyncClient
) -> None:
    nginx = {
        "status": 502,
        "body": "<html>502 Bad Gateway nginx</html>",
        "content_type": "text/html",
    }
    fal_server.script("submit", nginx)
    fal_server.script("status", {"kind": "timeout", "hang_seconds": 0.01, "status": 504})
    handle = await sdk.submit("fal-ai/flux/dev", {"prompt": "a cat"})
    assert fal_server.submit_count(accepted_only=False) == 2
    with pytest.raises(fal_client.client.FalClientHTTPError) as raised:
        await handle.status()
    assert raised.value.status_code == 504  # JSON, so not an ingress error: not retried


async def test_fal_client_gets_plain_503_at_once(
    fal_server: FalEmulator, sdk: fal_client.AsyncClient
) -> None:
    fal_server.script("submit", 503)
    with pytest.raises(fal_client.client.FalClientHTTPError) as raised:
        await sdk.submit("fal-ai/flux/dev", {"prompt": "a cat"})
    assert raised.value.status_code == 503
    assert fal_server.submit_count(accepted_only=False) == 1


async def test_submit_that_times_out_on_the_client_still_creates_a_job(
    fal_server: FalEmulator,
) -> None:
    fal_server.script("submit", {"kind": "timeout", "hang_seconds": 0.4})
    url = fal_client.client.QUEUE_URL_FORMAT + "fal-ai/flux/dev"
    async with httpx.AsyncClient(headers=KEY, timeout=0.1) as client:
        with pytest.raises(httpx.ReadTimeout):
            await client.post(url, json={"prompt": "a cat"})
    for _ in range(100):
        if fal_server.submit_count():
            break
        await asyncio.sleep(0.02)
    assert fal_server.submit_count() == 1


async def test_command_line_serves_an_emulator_in_another_process() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "tests.emulators",
        "fal",
        "--port",
        str(port),
        "--latency",
        "0.1",
        cwd=REPO_ROOT,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.DEVNULL,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        async with httpx.AsyncClient(base_url=base, headers=KEY) as client:
            for _ in range(200):
                try:
                    if (await client.get("/_emulator/health")).status_code == 200:
                        break
                except httpx.TransportError:
                    await asyncio.sleep(0.05)
            behaviour = (await client.get("/_emulator/behaviour")).json()
            assert behaviour["latency"] == 0.1
            submitted = await submit(client)
            assert submitted["status_url"].startswith(base)
            log = (await client.get("/_emulator/requests")).json()
            assert log["submits_accepted"] == {"fal-ai/flux/dev": 1}
    finally:
        process.terminate()
        await process.wait()
