"""The models face (gateway/api/models.py): the catalog in OpenAI list format."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from gateway.catalog import parse_catalog
from providers.registry import KNOWN_PROVIDERS
from tests.api.support import assert_error, running
from tests.conftest import AUTH_A, make_settings

SANDBOX_MODELS = {
    "sandbox-image": "image",
    "sandbox-image-fast": "image",
    "sandbox-video": "video",
    "sandbox-upscale": "upscale",
    "sandbox-face-swap": "face_swap",
}


async def get_json(client: httpx.AsyncClient, path: str) -> dict[str, Any]:
    resp = await client.get(path, headers=AUTH_A)
    assert resp.status_code == 200, resp.text
    body: dict[str, Any] = resp.json()
    return body


async def models_by_id(client: httpx.AsyncClient, query: str = "") -> dict[str, dict[str, Any]]:
    body = await get_json(client, f"/v1/models{query}")
    assert body["object"] == "list"
    return {m["id"]: m for m in body["data"]}


async def test_models_are_listed_in_openai_list_format(client: httpx.AsyncClient) -> None:
    body = await get_json(client, "/v1/models")
    assert body["object"] == "list"
    assert set(SANDBOX_MODELS) <= {m["id"] for m in body["data"]}
    for model in body["data"]:
        assert model["object"] == "model"
        assert isinstance(model["created"], int) and not isinstance(model["created"], bool)
        assert isinstance(model["owned_by"], str) and model["owned_by"]


async def test_models_show_kind_jobs_only_and_description(client: httpx.AsyncClient) -> None:
    models = await models_by_id(client)
    for model_id, kind in SANDBOX_MODELS.items():
        model = models[model_id]
        assert model["kind"] == kind
        assert model["jobs_only"] is False
        assert isinstance(model["description"], str) and model["description"]


async def test_model_parameters_apply_the_models_defaults_and_bounds(
    client: httpx.AsyncClient,
) -> None:
    models = await models_by_id(client)
    image = models["sandbox-image"]["parameters"]
    assert image["type"] == "object"
    assert image["required"] == ["prompt"]
    assert image["additionalProperties"] is False
    props = image["properties"]
    assert props["prompt"]["type"] == "string"
    assert props["width"]["type"] == "integer"
    assert props["width"]["default"] == 1024
    assert props["width"]["maximum"] == 2048  # the model's bound, tighter than the kind's
    assert props["height"]["maximum"] == 2048
    assert props["steps"]["default"] == 20  # the model's default
    assert props["cfg_scale"]["default"] == 7.0
    assert props["cfg_scale"]["type"] == "number"

    fast = models["sandbox-image-fast"]["parameters"]["properties"]
    assert fast["width"]["maximum"] == 1024
    upscale = models["sandbox-upscale"]["parameters"]
    assert upscale["required"] == ["image_url"]
    assert upscale["properties"]["scale_factor"]["maximum"] == 4
    video = models["sandbox-video"]["parameters"]["properties"]
    assert video["duration"]["maximum"] == 10
    face_swap = models["sandbox-face-swap"]["parameters"]
    assert set(face_swap["required"]) == {"source_image", "target_image"}


async def test_model_routes_report_availability(client: httpx.AsyncClient) -> None:
    models = await models_by_id(client)
    image = models["sandbox-image"]
    assert image["available"] is True
    assert image["routes"] == [
        {
            "provider": "sandbox",
            "target": "image",
            "role": "primary",
            "available": True,
            "reason": None,
            "circuit": "closed",
        }
    ]


async def test_a_model_is_readable_by_id(client: httpx.AsyncClient) -> None:
    listed = (await models_by_id(client))["sandbox-upscale"]
    model = await get_json(client, "/v1/models/sandbox-upscale")
    assert model == listed


async def test_unknown_model_is_not_found(client: httpx.AsyncClient) -> None:
    resp = await client.get("/v1/models/no-such-model", headers=AUTH_A)
    assert_error(resp, 404, code="model_not_found")


async def test_models_can_be_filtered_by_kind(client: httpx.AsyncClient) -> None:
    for kind in ("image", "video", "upscale", "face_swap"):
        listed = await models_by_id(client, f"?kind={kind}")
        assert {m for m, k in SANDBOX_MODELS.items() if k == kind} <= set(listed)
        assert {m["kind"] for m in listed.values()} == {kind}


async def test_models_need_an_api_key(client: httpx.AsyncClient) -> None:
    assert_error(await client.get("/v1/models"), 401)
    assert_error(await client.get("/v1/models/sandbox-image"), 401)


HOSTED_CATALOG = {
    "models": [
        {
            "id": "hosted-flux",
            "kind": "image",
            "description": "Only on fal.",
            "routes": [{"provider": "fal", "target": "fal-ai/flux/schnell"}],
        },
        {
            "id": "acme/flux-dev",
            "kind": "image",
            "jobs_only": True,
            "routes": [
                {"provider": "fal", "target": "fal-ai/flux/dev"},
                {"provider": "sandbox", "target": "image"},
            ],
        },
    ]
}


@pytest.fixture
async def hosted_client(tmp_path: Path) -> AsyncIterator[httpx.AsyncClient]:
    catalog = parse_catalog(HOSTED_CATALOG, KNOWN_PROVIDERS, source="hosted.toml")
    async with running(make_settings(tmp_path), catalog=catalog) as (client, _gw):
        yield client


async def test_route_of_a_provider_without_credentials_is_unavailable_with_a_reason(
    hosted_client: httpx.AsyncClient,
) -> None:
    models = await models_by_id(hosted_client)
    assert set(models) == {"hosted-flux", "acme/flux-dev"}
    hosted = models["hosted-flux"]
    assert hosted["available"] is False
    assert hosted["owned_by"] == "fal"
    [route] = hosted["routes"]
    assert (route["provider"], route["target"], route["role"]) == (
        "fal",
        "fal-ai/flux/schnell",
        "primary",
    )
    assert route["available"] is False
    assert isinstance(route["reason"], str) and "FAL_KEY" in route["reason"]


async def test_model_with_an_available_fallback_is_available(
    hosted_client: httpx.AsyncClient,
) -> None:
    model = await get_json(hosted_client, "/v1/models/acme/flux-dev")
    assert model["id"] == "acme/flux-dev"
    assert model["jobs_only"] is True
    assert model["available"] is True
    primary, fallback = model["routes"]
    assert (primary["role"], primary["available"]) == ("primary", False)
    assert (fallback["provider"], fallback["role"], fallback["available"]) == (
        "sandbox",
        "fallback",
        True,
    )
    assert fallback["reason"] is None
