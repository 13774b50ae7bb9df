"""Bodies of the faces that take files (gateway/api/multipart.py): a multipart form or JSON,
bounded, and refused with a clear 4xx when malformed."""

from __future__ import annotations

from pathlib import Path

import httpx

from tests.api.support import png, running
from tests.conftest import AUTH_A, make_settings

BOUNDARY = "b0undary"
FORM = {"Content-Type": f"multipart/form-data; boundary={BOUNDARY}", **AUTH_A}


def form(*parts: tuple[str, str | bytes, str | None]) -> bytes:
    out = b""
    for name, value, filename in parts:
        disposition = f'form-data; name="{name}"' + (f'; filename="{filename}"' if filename else "")
        data = value.encode() if isinstance(value, str) else value
        out += f"--{BOUNDARY}\r\nContent-Disposition: {disposition}\r\n\r\n".encode()
        out += data + b"\r\n"
    return out + f"--{BOUNDARY}--\r\n".encode()


async def post(client: httpx.AsyncClient, body: bytes, headers: dict[str, str]) -> httpx.Response:
    return await client.post("/v1/videos", content=body, headers=headers)


async def test_a_form_and_the_same_fields_as_json_make_the_same_video(tmp_path: Path) -> None:
    async with running(make_settings(tmp_path)) as (client, _):
        fields = {"model": "sandbox-video", "prompt": "a kite", "seconds": "2", "size": "64x64"}
        a = await post(client, form(*((k, v, None) for k, v in fields.items())), FORM)
        b = await client.post("/v1/videos", json=fields, headers=AUTH_A)
    assert a.status_code == b.status_code == 200, (a.text, b.text)
    for video in (a.json(), b.json()):
        assert (video["seconds"], video["size"], video["prompt"]) == ("2", "64x64", "a kite")


async def test_a_form_with_integer_extras_reads_their_digits(tmp_path: Path) -> None:
    async with running(make_settings(tmp_path)) as (client, gw):
        body = form(("prompt", "a kite", None), ("fps", "3", None), ("seed", "42", None))
        resp = await post(client, body, FORM)
        assert resp.status_code == 200, resp.text
        job = await gw.store.get_job(resp.json()["id"])
    assert job is not None and (job.input["fps"], job.input["seed"]) == (3, 42)


async def test_a_malformed_form_is_a_400(tmp_path: Path) -> None:
    async with running(make_settings(tmp_path)) as (client, _):
        headers = {**AUTH_A, "Content-Type": "multipart/form-data"}  # no boundary
        resp = await post(client, b"--x\r\n", headers)
    assert resp.status_code == 400
    assert resp.json()["error"]["code"] == "invalid_multipart"


async def test_a_form_over_the_upload_limit_is_a_413(tmp_path: Path) -> None:
    async with running(make_settings(tmp_path, max_upload_bytes=4096)) as (client, _):
        body = form(
            ("prompt", "a kite", None), ("input_reference", b"\x89PNG" + bytes(8192), "a.png")
        )
        resp = await post(client, body, FORM)
    assert resp.status_code == 413
    assert resp.json()["error"]["code"] == "body_too_large"


async def test_another_content_type_is_a_415(tmp_path: Path) -> None:
    async with running(make_settings(tmp_path)) as (client, _):
        resp = await post(client, b"prompt=x", {**AUTH_A, "Content-Type": "text/plain"})
    assert resp.status_code == 415


async def test_a_second_input_reference_or_a_file_id_is_refused(tmp_path: Path) -> None:
    async with running(make_settings(tmp_path)) as (client, _):
        two = form(
            ("prompt", "x", None),
            ("input_reference", png(64, 64), "a.png"),
            ("input_reference", png(64, 64), "b.png"),
        )
        resp = await post(client, two, FORM)
        assert resp.status_code == 400 and resp.json()["error"]["param"] == "input_reference"
        file_id = form(("prompt", "x", None), ("input_reference[file_id]", "file-1", None))
        resp = await post(client, file_id, FORM)
        assert resp.status_code == 400 and resp.json()["error"]["param"] == "input_reference"
