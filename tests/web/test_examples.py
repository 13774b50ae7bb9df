"""The model pages' examples (gateway/web/examples.py): valid code that submits valid jobs."""

from __future__ import annotations

import asyncio
import json
import shlex
from pathlib import Path

import httpx
import pytest

from gateway.app import Gateway
from gateway.scheduler.availability import Availability
from gateway.web.examples import examples, submit_request
from gateway.web.view import CatalogView, ModelView
from tests.conftest import AUTH_A, KEY_A
from tests.web.browser import live_gateway

BASE = "https://gw.example.com"


def sandbox_models(gateway: Gateway) -> list[ModelView]:
    view = CatalogView(gateway.catalog, Availability(gateway.providers, gateway.breakers))
    return [m for m in view.models() if m.providers == ("sandbox",)]


async def test_every_sandbox_models_example_job_is_accepted(
    client: httpx.AsyncClient, gateway: Gateway
) -> None:
    models = sandbox_models(gateway)
    assert len(models) >= 5
    for model in models:
        path, body = submit_request(model)
        resp = await client.post(f"/v1{path}", json=body, headers=AUTH_A)
        assert resp.status_code == 202, (model.id, resp.text)


async def test_examples_are_valid_code_naming_the_gateway_and_model(gateway: Gateway) -> None:
    for model in sandbox_models(gateway):
        curl, requests_code, openai_code = examples(model, BASE + "/")
        for example in (requests_code, openai_code):
            compile(example.code, f"{model.id}-{example.slug}", "exec")
            assert f'"{BASE}/v1"' in example.code
            assert f'"{model.id}"' in example.code
        words = shlex.split(curl.code.split("\n# ->")[0].replace("\\\n", " "), comments=True)
        body = json.loads(words[words.index("-d") + 1])
        assert body["model"] == model.id
        assert words[words.index("curl") + 2].startswith(f"{BASE}/v1/jobs")


@pytest.mark.parametrize(
    ("model_id", "synchronous"), [("sandbox-image", True), ("sandbox-video", False)]
)
async def test_openai_example_uses_images_generate_only_for_image_models(
    gateway: Gateway, model_id: str, synchronous: bool
) -> None:
    view = CatalogView(gateway.catalog, Availability(gateway.providers, gateway.breakers))
    openai_code = examples(view.model(model_id), BASE)[2].code
    assert ("client.images.generate(" in openai_code) is synchronous
    assert "client.post(" in openai_code


@pytest.mark.parametrize("slug", ["requests", "openai"])
async def test_python_examples_run_against_a_live_gateway(
    tmp_path: Path, slug: str, capsys: pytest.CaptureFixture[str]
) -> None:
    async with live_gateway(tmp_path) as live:
        view = CatalogView(
            live.gateway.catalog, Availability(live.gateway.providers, live.gateway.breakers)
        )
        (example,) = [
            e for e in examples(view.model("sandbox-image-fast"), live.url) if e.slug == slug
        ]
        code = example.code.replace("bsk_...", KEY_A).replace("time.sleep(2)", "time.sleep(0.05)")
        await asyncio.to_thread(exec, compile(code, slug, "exec"), {})  # blocking clients
    out = capsys.readouterr().out
    assert f"{live.url}/files/job-" in out
    assert "Job ended" not in out


@pytest.mark.parametrize(
    ("model_id", "video", "edit"),
    [
        ("sandbox-video", True, False),
        ("sandbox-edit", False, True),
        ("sandbox-upscale", False, True),
        ("sandbox-image", False, False),
    ],
)
async def test_openai_example_shows_the_video_and_edit_apis_for_their_kinds(
    gateway: Gateway, model_id: str, video: bool, edit: bool
) -> None:
    view = CatalogView(gateway.catalog, Availability(gateway.providers, gateway.breakers))
    openai_code = examples(view.model(model_id), BASE)[2].code
    compile(openai_code, model_id, "exec")
    assert ("client.videos.create_and_poll(" in openai_code) is video
    assert ("client.images.edit(" in openai_code) is edit


@pytest.mark.filterwarnings("ignore:The Sora API:DeprecationWarning")
async def test_the_video_example_downloads_a_video_from_a_live_gateway(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    async with live_gateway(tmp_path) as live:
        view = CatalogView(
            live.gateway.catalog, Availability(live.gateway.providers, live.gateway.breakers)
        )
        example = examples(view.model("sandbox-video"), live.url)[2]
        code = example.code.replace("bsk_...", KEY_A)
        code = code.split("# the Jobs API")[0]  # the OpenAI video part alone
        await asyncio.to_thread(exec, compile(code, "video", "exec"), {})
    assert (tmp_path / "video.bin").read_bytes().startswith(b"GIF8")
