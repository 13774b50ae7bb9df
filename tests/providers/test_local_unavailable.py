"""The local provider without the ``local`` extra, and its route checks: no torch needed."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from gateway.app import create_app
from gateway.catalog import parse_catalog
from gateway.errors import ConfigError
from providers import local_torch
from providers.base import ProviderUnavailable, RouteSpec
from providers.local_pipelines import EXTRA_MISSING
from providers.local_torch import LocalTorchProvider
from providers.registry import KNOWN_PROVIDERS
from tests.conftest import AUTH_A, ROOT, make_settings


def route(target: str | Path, **options: Any) -> RouteSpec:
    return RouteSpec("local", str(target), options)


@pytest.fixture
def no_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(local_torch, "extra_installed", lambda: False)


@pytest.fixture
def with_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(local_torch, "extra_installed", lambda: True)


def test_importing_the_gateway_and_building_the_local_provider_imports_no_torch() -> None:
    code = (
        "import sys\n"
        "from gateway.app import create_app\n"
        "from providers.local_torch import LocalTorchProvider\n"
        "from providers.base import RouteSpec\n"
        "provider = LocalTorchProvider()\n"
        "print(provider.availability(RouteSpec('local', '.')))\n"
        "assert not {'torch', 'diffusers', 'transformers'} & set(sys.modules), 'imported'\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr


@pytest.mark.usefixtures("no_extra")
async def test_without_the_extra_the_gateway_starts_and_local_routes_say_why(
    tmp_path: Path,
) -> None:
    catalog = {
        "models": [
            {"id": "local-only", "kind": "image", "routes": [{"provider": "local", "target": "m"}]}
        ]
    }
    app = create_app(
        make_settings(tmp_path), catalog=parse_catalog(catalog, KNOWN_PROVIDERS, source="t")
    )
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as c:
            model = (await c.get("/v1/models/local-only", headers=AUTH_A)).json()
            resp = await c.post(
                "/v1/jobs/images", json={"model": "local-only", "prompt": "x"}, headers=AUTH_A
            )

    [info] = model["routes"]
    assert info["available"] is False and info["reason"] == EXTRA_MISSING
    assert resp.status_code == 503 and "pip install '.[local]'" in resp.json()["error"]["message"]


@pytest.mark.usefixtures("no_extra")
async def test_without_the_extra_a_submit_is_refused_with_the_reason() -> None:
    provider = LocalTorchProvider()
    with pytest.raises(ProviderUnavailable) as caught:
        await provider.submit(route("m"), {"prompt": "x"}, job_id="j", kind="image")
    assert caught.value.code == "local_extra_missing"
    await provider.aclose()


@pytest.mark.usefixtures("with_extra")
@pytest.mark.parametrize(
    ("options", "problem"),
    [
        ({"dtype": "float8"}, "'dtype'"),
        ({"device": "tpu"}, "'device'"),
        ({"pipeline": "img2img"}, "'pipeline'"),
        ({"attention_slicing": "yes"}, "'attention_slicing'"),
        ({"video_format": "webm"}, "'video_format'"),
        ({"max_frames": 0}, "'max_frames'"),
        ({"scheduler": ""}, "'scheduler'"),
    ],
)
def test_a_bad_route_option_makes_the_route_unavailable_with_the_reason(
    tmp_path: Path, options: dict[str, Any], problem: str
) -> None:
    ok, reason = LocalTorchProvider().availability(route(tmp_path, **options))
    assert not ok and reason is not None and problem in reason


@pytest.mark.usefixtures("with_extra")
def test_a_missing_directory_is_named_and_a_relative_one_resolves_in_the_models_dir(
    tmp_path: Path,
) -> None:
    (tmp_path / "present").mkdir()
    provider = LocalTorchProvider(models_dir=tmp_path)

    assert provider.availability(route("present")) == (True, None)
    ok, reason = provider.availability(route("absent"))
    assert not ok and reason == f"model directory {tmp_path / 'absent'} not found"


@pytest.mark.usefixtures("with_extra")
async def test_a_pipeline_that_does_not_fit_the_kind_is_refused(tmp_path: Path) -> None:
    provider = LocalTorchProvider()
    with pytest.raises(ProviderUnavailable, match="cannot run a job of kind 'image'"):
        await provider.submit(
            route(tmp_path, pipeline="video"), {"prompt": "x"}, job_id="j", kind="image"
        )
    await provider.aclose()


@pytest.mark.parametrize("settings", [{"device": "tpu"}, {"dtype": "int8"}, {"max_pipelines": 0}])
def test_bad_settings_fail_at_start_up(settings: dict[str, Any]) -> None:
    with pytest.raises(ConfigError):
        LocalTorchProvider(**settings)


@pytest.fixture
async def closed() -> AsyncIterator[LocalTorchProvider]:
    provider = LocalTorchProvider()
    await provider.aclose()
    yield provider


async def test_a_closed_provider_refuses_work(closed: LocalTorchProvider, tmp_path: Path) -> None:
    with pytest.raises(ProviderUnavailable, match="closed"):
        await closed.submit(route(tmp_path), {"prompt": "x"}, job_id="j", kind="image")
