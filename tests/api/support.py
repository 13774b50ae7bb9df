"""Helpers shared by the API, auth, app and CLI tests: a running app, media and error checks."""

from __future__ import annotations

import base64
import contextlib
import io
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import urlsplit

import httpx
from PIL import Image

from gateway.app import Gateway, create_app
from gateway.catalog import Catalog
from gateway.settings import Settings
from tests.conftest import AUTH_A

ERROR_FIELDS = {"message", "type", "param", "code"}


def requests_counted(gw: Gateway, method: str, route: str, status: str) -> float:
    """How many requests the HTTP latency histogram counted under ``route``'s template."""
    assert gw.metrics is not None
    labels = {"method": method, "route": route, "status": status}
    value = gw.metrics.registry.get_sample_value(
        "backserv_http_request_duration_seconds_count", labels
    )
    return value or 0.0


@contextlib.asynccontextmanager
async def running(
    settings: Settings, *, catalog: Catalog | None = None, start_scheduler: bool = True
) -> AsyncIterator[tuple[httpx.AsyncClient, Gateway]]:
    """An app with its real lifespan, and a client for it; shut down on exit."""
    app = create_app(settings, catalog=catalog, start_scheduler=start_scheduler)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
            yield client, app.state.gateway


def png(width: int, height: int, colour: tuple[int, int, int] = (200, 30, 30)) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (width, height), colour).save(out, format="PNG")
    return out.getvalue()


def data_url(data: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(data).decode()


def open_image(data: bytes) -> Image.Image:
    image = Image.open(io.BytesIO(data))
    image.load()
    return image


def local_path(url: str) -> str:
    """The path and query of an absolute result URL, to fetch it through the test client."""
    parts = urlsplit(url)
    assert f"{parts.scheme}://{parts.netloc}" == "http://testserver", url
    return f"{parts.path}?{parts.query}" if parts.query else parts.path


async def download(client: httpx.AsyncClient, url: str) -> httpx.Response:
    """Fetch a result URL the way a browser would: no Authorization header."""
    return await client.get(local_path(url))


async def submit_image(
    client: httpx.AsyncClient, headers: dict[str, str] = AUTH_A, **fields: Any
) -> dict[str, Any]:
    """POST /v1/jobs/images with a small image (64 by 64 unless given); return the 202 body."""
    body: dict[str, Any] = {"model": "sandbox-image", "prompt": "a red fox", "width": 64}
    body["height"] = 64
    body.update(fields)
    resp = await client.post("/v1/jobs/images", json=body, headers=headers)
    assert resp.status_code == 202, resp.text
    job: dict[str, Any] = resp.json()
    return job


def assert_error(
    resp: httpx.Response,
    status: int,
    *,
    param: str | None = None,
    code: str | None = None,
    error_type: str | None = None,
) -> dict[str, Any]:
    """The response is ``status`` with exactly the OpenAI error envelope; return ``error``."""
    assert resp.status_code == status, resp.text
    assert resp.headers["content-type"].startswith("application/json"), resp.headers
    body = resp.json()
    assert set(body) == {"error"}, body
    error: dict[str, Any] = body["error"]
    assert set(error) == ERROR_FIELDS, error
    assert isinstance(error["message"], str) and error["message"], error
    assert isinstance(error["type"], str) and error["type"], error
    if param is not None:
        assert error["param"] == param, error
    if code is not None:
        assert error["code"] == code, error
    if error_type is not None:
        assert error["type"] == error_type, error
    return error
