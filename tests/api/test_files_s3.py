"""Result files kept in a bucket (moto's S3 server), served by the files API: the same
HEAD, Range and Content-Type answers as for a directory, redirects to presigned URLs,
deletion, readiness and the doctor's check."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from gateway.app import Gateway
from gateway.doctor import check_storage
from tests.api.support import download, local_path, open_image, running, submit_image
from tests.conftest import AUTH_A, make_settings, wait_for
from tests.s3server import S3Server

Running = tuple[httpx.AsyncClient, Gateway]


@pytest.fixture(params=["local", "s3"])
async def app(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Running]:
    """The app with its files in a directory, then in a bucket: each test runs on both."""
    extra: dict[str, Any] = {}
    if request.param == "s3":
        s3: S3Server = request.getfixturevalue("s3")
        extra = s3.settings(s3.new_bucket())
    async with running(make_settings(tmp_path, sandbox_latency=0.0, **extra)) as pair:
        yield pair


async def finished(client: httpx.AsyncClient) -> dict[str, Any]:
    job = await wait_for(client, (await submit_image(client, width=96, height=64))["id"])
    assert job["status"] == "COMPLETED", job
    return job


async def test_a_result_downloads_with_its_type_on_either_backend(app: Running) -> None:
    client, gw = app
    resp = await download(client, (await finished(client))["result"]["url"])
    assert resp.status_code == 200, resp.text
    assert resp.headers["content-type"] == "image/png"
    assert resp.headers["accept-ranges"] == "bytes"
    assert int(resp.headers["content-length"]) == len(resp.content)
    assert open_image(resp.content).size == (96, 64)
    local_files = list((gw.settings.storage_dir).rglob("*.png"))
    assert bool(local_files) == (gw.storage.kind == "local")  # a bucket: nothing on disk


async def test_head_answers_the_headers_of_get_without_a_body(app: Running) -> None:
    client, _ = app
    path = local_path((await finished(client))["result"]["url"])
    got, head = await client.get(path), await client.head(path)
    assert (head.status_code, head.content) == (200, b"")
    for name in ("content-type", "content-length", "accept-ranges", "etag", "last-modified"):
        assert head.headers[name] == got.headers[name], name


@pytest.mark.parametrize(
    ("header", "status", "span"),
    [
        ("bytes=0-9", 206, (0, 10)),
        ("bytes=5-", 206, (5, None)),
        ("bytes=-7", 206, (-7, None)),
        ("bytes=0-999999999", 206, (0, None)),
        ("bytes=999999999-", 416, None),
        ("lines=0-9", 400, None),
    ],
)
async def test_a_range_is_answered_alike_on_either_backend(
    app: Running, header: str, status: int, span: tuple[int, int | None] | None
) -> None:
    client, _ = app
    path = local_path((await finished(client))["result"]["url"])
    whole = (await client.get(path)).content
    resp = await client.get(path, headers={"Range": header})
    assert resp.status_code == status, resp.text
    size = len(whole)
    if status == 416:
        assert resp.headers["content-range"] == f"bytes */{size}"
    if span is None:
        return
    start, end = span
    expected = whole[start:end]
    assert resp.content == expected
    if status == 206:
        first = start % size
        assert resp.headers["content-range"] == f"bytes {first}-{first + len(expected) - 1}/{size}"


async def test_several_ranges_are_answered_as_multipart_byteranges(app: Running) -> None:
    client, _ = app
    path = local_path((await finished(client))["result"]["url"])
    whole = (await client.get(path)).content
    resp = await client.get(path, headers={"Range": "bytes=0-1,4-5,5-7"})
    assert resp.status_code == 206
    kind, _, boundary = resp.headers["content-type"].partition("; boundary=")
    assert kind == "multipart/byteranges"
    assert int(resp.headers["content-length"]) == len(resp.content)
    size = len(whole)
    expected = (
        (
            f"--{boundary}\r\nContent-Type: image/png\r\nContent-Range: bytes 0-1/{size}\r\n\r\n"
        ).encode()
        + whole[0:2]
        + b"\r\n"
    )
    expected += (
        (
            f"--{boundary}\r\nContent-Type: image/png\r\nContent-Range: bytes 4-7/{size}\r\n\r\n"
        ).encode()
        + whole[4:8]
        + b"\r\n"
        + f"--{boundary}--".encode()
    )
    assert resp.content == expected


async def test_deleting_a_jobs_files_removes_them_and_its_url_answers_410(app: Running) -> None:
    client, gw = app
    job = await finished(client)
    name = job["result"]["files"][0]["name"] if "files" in job["result"] else "0.png"
    assert await gw.storage.stat(job["id"], name) is not None
    await gw.service.purge_files(None, job["id"])
    assert await gw.storage.stat(job["id"], name) is None
    assert (await download(client, job["result"]["url"])).status_code == 410


async def test_retention_removes_the_files_of_expired_jobs(app: Running) -> None:
    client, gw = app
    job = await finished(client)
    counts = await gw.janitor.run_once(now=job["completed_at"] + gw.settings.file_ttl_seconds + 1)
    assert counts.files == 1
    assert await gw.storage.stat(job["id"], "0.png") is None


async def test_readiness_checks_the_storage(app: Running) -> None:
    client, _ = app
    body = (await client.get("/readyz")).json()
    assert body["checks"]["storage"] is True, body
    assert body["status"] == "ready"


# -- a bucket only ------------------------------------------------------------------------------


async def test_redirect_delivery_sends_get_to_a_presigned_url_and_answers_head_itself(
    tmp_path: Path, s3: S3Server, bucket: str
) -> None:
    settings = make_settings(
        tmp_path, sandbox_latency=0.0, storage_delivery="redirect", **s3.settings(bucket)
    )
    async with running(settings) as (client, _):
        path = local_path((await finished(client))["result"]["url"])
        resp = await client.get(path)
        assert resp.status_code == 307, resp.text
        location = resp.headers["location"]
        assert location.startswith(f"{s3.endpoint}/{bucket}/results/")
        head = await client.head(path)
        assert (head.status_code, head.headers["content-type"]) == (200, "image/png")
    async with httpx.AsyncClient() as outside:
        obj = await outside.get(location, headers={"Range": "bytes=0-7"})
    assert (obj.status_code, obj.content) == (206, b"\x89PNG\r\n\x1a\n")
    assert obj.headers["content-type"] == "image/png"


async def test_readiness_fails_naming_the_bucket_when_it_cannot_be_written(
    tmp_path: Path, s3: S3Server
) -> None:
    settings = make_settings(tmp_path, **s3.settings("bucket-that-is-not-there"))
    async with running(settings) as (client, _):
        resp = await client.get("/readyz")
    assert resp.status_code == 503
    body = resp.json()
    assert "storage" in body["failed"]
    assert "bucket-that-is-not-there" in body["checks"]["storage_error"]


async def test_a_job_whose_bucket_is_gone_is_never_completed(tmp_path: Path, s3: S3Server) -> None:
    settings = make_settings(
        tmp_path,
        sandbox_latency=0.0,
        job_timeout_seconds=2.0,
        **s3.settings("bucket-that-is-not-there"),
    )
    async with running(settings) as (client, _):
        job = await wait_for(client, (await submit_image(client))["id"], AUTH_A, timeout=30)
    assert job["status"] == "FAILED", job
    assert "bucket-that-is-not-there" in job["error"]["message"], job["attempts"]
    assert job["error"]["code"] == "result_not_stored"


async def test_the_doctor_writes_a_probe_object_and_names_a_missing_bucket(
    tmp_path: Path, s3: S3Server, bucket: str
) -> None:
    good = await check_storage(make_settings(tmp_path, **s3.settings(bucket)))
    assert (good.status, bucket in good.detail) == ("ok", True)
    assert s3.keys(bucket) == []  # the probe was deleted
    bad = await check_storage(make_settings(tmp_path, **s3.settings("bucket-that-is-not-there")))
    assert bad.status == "fail"
    assert "bucket-that-is-not-there" in bad.detail
    assert bad.fix is not None and "BACKSERV_STORAGE_URL" in bad.fix
