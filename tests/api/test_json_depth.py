"""Request bodies nested too deeply are a 400 ``json_too_deep`` (gateway/api/common.py)."""

from __future__ import annotations

import httpx

from gateway.api.common import MAX_JSON_DEPTH
from tests.conftest import AUTH_A


def nested(depth: int) -> bytes:
    """A JSON object whose ``meta`` nests lists so that the body is ``depth`` levels deep."""
    inner = "[" * (depth - 1) + "]" * (depth - 1)
    return f'{{"model": "sandbox-image", "input": {{"prompt": "x"}}, "meta": {inner}}}'.encode()


async def post(client: httpx.AsyncClient, body: bytes) -> httpx.Response:
    headers = AUTH_A | {"content-type": "application/json"}
    return await client.post("/v1/jobs", content=body, headers=headers)


async def test_a_body_deeper_than_the_limit_is_refused(idle_client: httpx.AsyncClient) -> None:
    resp = await post(idle_client, nested(MAX_JSON_DEPTH + 1))
    assert resp.status_code == 400, resp.text
    error = resp.json()["error"]
    assert error["code"] == "json_too_deep"
    assert str(MAX_JSON_DEPTH) in error["message"]


async def test_a_very_deep_body_is_refused_without_a_server_error(
    idle_client: httpx.AsyncClient,
) -> None:
    resp = await post(idle_client, nested(5000))  # past orjson's own recursion limit
    assert resp.status_code == 400, resp.text


async def test_a_body_at_the_limit_is_not_refused_for_its_depth(
    idle_client: httpx.AsyncClient,
) -> None:
    resp = await post(idle_client, nested(MAX_JSON_DEPTH))
    assert resp.json().get("error", {}).get("code") != "json_too_deep", resp.text
