"""Every response carries ``x-request-id``: the client's own when sane, else a new one."""

from __future__ import annotations

import os
import re
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from starlette.applications import Starlette

from gateway.api.request_id import new_request_id
from gateway.app import Gateway
from tests.api.support import local_path, running, submit_image
from tests.conftest import AUTH_A, make_settings
from tests.mersenne import predict_next_96

GENERATED = re.compile(r"^req_[0-9a-f]{24}$")


def ids_of(resp: httpx.Response) -> list[str]:
    return resp.headers.get_list("x-request-id")


def generated_id(resp: httpx.Response) -> str:
    """The response has exactly one x-request-id, made by the gateway."""
    ids = ids_of(resp)
    assert len(ids) == 1, (resp.status_code, ids)
    assert GENERATED.match(ids[0]), ids
    return ids[0]


@pytest.fixture
async def lenient_client(app: Starlette) -> AsyncIterator[httpx.AsyncClient]:
    """A client that receives the app's 500 answer instead of the re-raised exception."""
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as c:
        yield c


async def test_every_kind_of_response_has_a_request_id(client: httpx.AsyncClient) -> None:
    job = await submit_image(client)
    done = await client.get(f"/v1/jobs/{job['id']}?wait=5", headers=AUTH_A)
    assert done.json()["status"] == "COMPLETED", done.text
    file_url = local_path(done.json()["result"]["url"])

    requests: list[tuple[str, str, dict[str, str], bytes | None, int]] = [
        ("GET", "/healthz", {}, None, 200),
        ("GET", "/readyz", {}, None, 200),
        ("GET", "/v1/models", AUTH_A, None, 200),
        ("GET", "/v1/models", {}, None, 401),
        ("GET", "/v1/models/no-such-model", AUTH_A, None, 404),
        ("GET", "/no/such/route", {}, None, 404),
        ("DELETE", "/v1/models", AUTH_A, None, 405),
        ("POST", "/v1/jobs/images", AUTH_A, b"{not json", 400),
        ("POST", "/v1/images/generations", AUTH_A, b'{"model": "sandbox-image"}', 400),
        ("GET", f"/v1/jobs/{job['id']}", AUTH_A, None, 200),
        ("GET", f"/v1/jobs/{job['id']}?wait=99", AUTH_A, None, 400),
        ("GET", "/v1/jobs", AUTH_A, None, 200),
        ("POST", f"/v1/jobs/{job['id']}/cancel", AUTH_A, None, 409),
        ("GET", f"/v1/jobs/{job['id']}/events", AUTH_A, None, 200),
        ("GET", file_url, {}, None, 200),
        ("HEAD", file_url, {}, None, 200),
        ("GET", file_url.replace("sig=", "sig=x"), {}, None, 403),
    ]
    seen: set[str] = set()
    for method, path, headers, content, status in requests:
        headers = {**headers, "Content-Type": "application/json"} if content else headers
        resp = await client.request(method, path, headers=headers, content=content)
        assert resp.status_code == status, (method, path, resp.status_code, resp.text)
        rid = generated_id(resp)
        assert rid not in seen, "request ids must differ"
        seen.add(rid)


async def test_an_unhandled_error_still_has_one_request_id(
    app: Starlette, lenient_client: httpx.AsyncClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    gw: Gateway = app.state.gateway

    async def broken(*args: object, **kwargs: object) -> None:
        raise RuntimeError("boom")

    monkeypatch.setattr(gw.service, "list", broken)
    resp = await lenient_client.get("/v1/jobs", headers=AUTH_A)
    assert resp.status_code == 500
    assert resp.json()["error"]["type"] == "server_error"
    assert "boom" not in resp.text  # internals are not leaked
    generated_id(resp)

    echoed = await lenient_client.get("/v1/jobs", headers={**AUTH_A, "X-Request-Id": "trace-500"})
    assert echoed.status_code == 500
    assert ids_of(echoed) == ["trace-500"]


@pytest.mark.parametrize(
    "given",
    [
        "abc",
        str(uuid.uuid4()),
        "trace.id:span-01_A",
        "x" * 128,
        "req_0123456789abcdef01234567",
    ],
)
async def test_a_sane_client_request_id_is_echoed(client: httpx.AsyncClient, given: str) -> None:
    for path, headers in (("/healthz", {}), ("/v1/models", {}), ("/v1/models", AUTH_A)):
        resp = await client.get(path, headers={**headers, "X-Request-Id": given})
        assert ids_of(resp) == [given], (path, resp.status_code, ids_of(resp))


async def test_the_header_name_is_case_insensitive(client: httpx.AsyncClient) -> None:
    resp = await client.get("/healthz", headers={"x-REQUEST-id": "mixed-case"})
    assert ids_of(resp) == ["mixed-case"]


@pytest.mark.parametrize(
    "given",
    [
        b"x" * 129,  # too long
        b"",
        b"has space",
        b"semi;colon",
        b"a/b",
        b"<script>",
        b"caf\xc3\xa9",  # not ASCII
        b"line\\nbreak",
        b'quote"d',
    ],
)
async def test_an_insane_client_request_id_is_replaced(
    client: httpx.AsyncClient, given: bytes
) -> None:
    for path, headers in (("/healthz", {}), ("/v1/models", {})):
        resp = await client.get(path, headers={**headers, "X-Request-Id": given})
        generated_id(resp)
        assert given.decode(errors="replace") not in ids_of(resp)


async def test_generated_ids_are_unique(client: httpx.AsyncClient) -> None:
    ids = {generated_id(await client.get("/healthz")) for _ in range(200)}
    assert len(ids) == 200


def test_request_ids_cannot_be_predicted_from_earlier_ids() -> None:
    seen = [int(new_request_id().removeprefix("req_"), 16) for _ in range(208)]

    assert f"req_{predict_next_96(seen):024x}" != new_request_id()


async def test_the_request_id_does_not_leak_between_requests(tmp_path: Path) -> None:
    """A client id is echoed only on its own request; the next one gets a fresh id."""
    async with running(make_settings(tmp_path), start_scheduler=False) as (client, _gw):
        first = await client.get("/healthz", headers={"X-Request-Id": "mine"})
        second = await client.get("/healthz")
    assert ids_of(first) == ["mine"]
    assert generated_id(second) != "mine"


def test_a_forked_process_does_not_repeat_its_parents_request_ids() -> None:
    new_request_id()  # the parent has ids drawn ahead
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: its first id, to the parent
        try:
            os.write(write, new_request_id().encode())
        finally:
            os._exit(0)
    os.close(write)
    os.waitpid(pid, 0)
    with os.fdopen(read, "rb") as pipe:
        childs = pipe.read().decode()
    assert GENERATED.match(childs)
    assert childs != new_request_id()
