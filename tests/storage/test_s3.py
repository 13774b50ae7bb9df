"""ObjectStorage against moto's S3 server: what only a bucket has (multipart uploads,
presigned URLs, object metadata, an endpoint that may be unreachable) and its settings."""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from pydantic import ValidationError

from gateway.errors import StorageUnavailable
from gateway.storage import LocalStorage, OutputSource, ResultStorage, open_storage
from gateway.storage.bucket import BucketConfig
from gateway.storage.s3 import ObjectStorage
from tests.conftest import make_settings
from tests.s3server import S3Server, free_port
from tests.storage.test_contract import JOB, bucket_config, chunks_of

SOURCES = OutputSource(max_bytes=50_000_000)


def storage_of(s3: S3Server, bucket: str) -> ResultStorage:
    return open_storage(bucket_config(s3, bucket), Path("unused"), SOURCES)


async def test_objects_carry_their_content_type_under_the_prefix(s3: S3Server, bucket: str) -> None:
    storage = storage_of(s3, bucket)
    await storage.write(JOB, "0.webp", chunks_of(b"RIFF....WEBP"), "image/webp")
    key = f"results/01/{JOB}/0.webp"
    assert s3.keys(bucket) == [key]
    assert s3.client().head_object(Bucket=bucket, Key=key)["ContentType"] == "image/webp"


async def test_a_failed_multipart_upload_is_aborted_and_nothing_is_visible(
    s3: S3Server, bucket: str
) -> None:
    storage = storage_of(s3, bucket)

    async def cut_off() -> AsyncIterator[bytes]:
        for _ in range(3):
            yield b"v" * (4 * 1024 * 1024)  # two parts' worth, then the download fails
        raise ConnectionResetError("the provider's CDN hung up")

    with pytest.raises(ConnectionResetError):
        await storage.write(JOB, "0.mp4", cut_off(), "video/mp4")
    assert s3.keys(bucket) == []
    assert s3.pending_uploads(bucket) == []


async def test_a_presigned_url_serves_the_object_and_ranges_of_it(
    s3: S3Server, bucket: str
) -> None:
    storage = storage_of(s3, bucket)
    await storage.write(JOB, "0.png", chunks_of(b"0123456789"), "image/png")
    url = await storage.presign(JOB, "0.png", 60)
    assert url is not None and url.startswith(s3.endpoint)
    async with httpx.AsyncClient() as client:
        whole = await client.get(url)
        part = await client.get(url, headers={"Range": "bytes=2-4"})
    assert (whole.status_code, whole.content) == (200, b"0123456789")
    assert whole.headers["content-type"] == "image/png"
    assert (part.status_code, part.content) == (206, b"234")


async def test_a_missing_bucket_is_unavailable_storage_naming_it(s3: S3Server) -> None:
    storage = storage_of(s3, "no-such-bucket-here")
    with pytest.raises(StorageUnavailable, match="no-such-bucket-here") as caught:
        await storage.check()
    assert caught.value.status_code == 503
    with pytest.raises(StorageUnavailable):
        await storage.write(JOB, "0.png", chunks_of(b"x"), "image/png")


async def test_an_unreachable_endpoint_is_unavailable_storage_not_a_crash() -> None:
    config = BucketConfig(
        "results",
        endpoint_url=f"http://127.0.0.1:{free_port()}",
        region="us-east-1",
        access_key_id="a",
        secret_access_key="b",
        timeout_seconds=2.0,
    )
    storage = ObjectStorage(config, SOURCES)
    with pytest.raises(StorageUnavailable, match="results"):
        await storage.write(JOB, "0.png", chunks_of(b"x"), "image/png")
    with pytest.raises(StorageUnavailable):
        await storage.stat(JOB, "0.png")


def test_a_bucket_url_is_split_into_bucket_and_prefix() -> None:
    assert BucketConfig.parse("s3://media/backserv/results/") == BucketConfig(
        "media", "backserv/results"
    )
    assert BucketConfig.parse("s3://media").url == "s3://media"


@pytest.mark.parametrize("url", ["https://media/x", "s3://", "s3:///prefix", "media"])
def test_a_storage_url_that_names_no_bucket_is_refused_by_the_settings(
    tmp_path: Path, url: str
) -> None:
    with pytest.raises(ValidationError, match="storage_url"):
        make_settings(tmp_path, storage_url=url)


def test_the_settings_build_the_bucket_from_the_s3_variables(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("BACKSERV_STORAGE_URL", "s3://media/gen")
    monkeypatch.setenv("AWS_ENDPOINT_URL", "https://r2.example.com")
    monkeypatch.setenv("AWS_REGION", "auto")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "key-id")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "secret")
    bucket = make_settings(tmp_path).bucket
    assert bucket is not None
    assert dataclasses.astuple(bucket)[:6] == (
        "media",
        "gen",
        "https://r2.example.com",
        "auto",
        "key-id",
        "secret",
    )
    assert "secret" not in repr(bucket)


def test_without_a_storage_url_files_stay_in_the_directory(tmp_path: Path) -> None:
    settings = make_settings(tmp_path, storage_url="")
    assert settings.bucket is None
    storage = open_storage(settings.bucket, settings.storage_dir, SOURCES)
    assert isinstance(storage, LocalStorage)
