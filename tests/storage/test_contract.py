"""The ResultStorage contract, run against both backends: a directory and a bucket (moto)."""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from gateway.storage import LocalStorage, OutputSource, ResultStorage, open_storage
from gateway.storage.bucket import BucketConfig
from providers.base import Output
from tests.fakes import PNG, png_bytes
from tests.s3server import REGION, S3Server

JOB = "job-0123456789abcdef01234567"
OTHER = "job-fedcba9876543210fedcba98"


def bucket_config(s3: S3Server, bucket: str) -> BucketConfig:
    settings = s3.settings(bucket)
    return BucketConfig(
        bucket,
        "results",
        endpoint_url=s3.endpoint,
        region=REGION,
        access_key_id=settings["s3_access_key_id"],
        secret_access_key=settings["s3_secret_access_key"],
    )


@pytest.fixture(params=["local", "s3"])
def storage(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[ResultStorage]:
    sources = OutputSource(max_bytes=50_000_000)
    if request.param == "local":
        yield LocalStorage(tmp_path / "files", sources)
        return
    s3: S3Server = request.getfixturevalue("s3")
    yield open_storage(bucket_config(s3, s3.new_bucket()), tmp_path, sources)


async def chunks_of(data: bytes, size: int = 1 << 20) -> AsyncIterator[bytes]:
    for i in range(0, len(data), size):
        yield data[i : i + size]


async def collect(stream: AsyncIterator[bytes]) -> bytes:
    return b"".join([c async for c in stream])


async def test_a_saved_output_reads_back_whole_with_its_type(storage: ResultStorage) -> None:
    stored = await storage.save(JOB, 0, Output("image/png", data=PNG, width=8, height=8))
    assert (stored.name, stored.size, stored.width) == ("0.png", len(PNG), 8)
    info = await storage.stat(JOB, "0.png")
    assert info is not None
    assert (info.size, info.content_type) == (len(PNG), "image/png")
    assert await collect(storage.read(JOB, "0.png", 0, info.size)) == PNG
    assert await storage.read_all(JOB, "0.png") == PNG


async def test_a_range_reads_only_those_bytes(storage: ResultStorage) -> None:
    await storage.write(JOB, "0.bin", chunks_of(bytes(range(256)) * 4), "text/plain")
    assert await collect(storage.read(JOB, "0.bin", 10, 20)) == bytes(range(10, 20))
    assert await storage.read_all(JOB, "0.bin", limit=3) == bytes([0, 1, 2])


async def test_a_large_file_streams_in_and_out_intact(storage: ResultStorage) -> None:
    """Larger than one multipart part: the bucket gets a multipart upload."""
    data = hashlib.sha256(b"seed").digest() * (12 * 1024 * 1024 // 32 + 7)
    size = await storage.write(JOB, "0.mp4", chunks_of(data), "video/mp4")
    assert size == len(data)
    info = await storage.stat(JOB, "0.mp4")
    assert info is not None
    assert (info.size, info.content_type) == (len(data), "video/mp4")
    assert await collect(storage.read(JOB, "0.mp4", 0, info.size)) == data


async def test_a_failed_write_leaves_the_previous_file_and_no_partial_one(
    storage: ResultStorage,
) -> None:
    await storage.write(JOB, "0.mp4", chunks_of(b"old"), "video/mp4")

    async def breaks_midway() -> AsyncIterator[bytes]:
        yield b"x" * (6 * 1024 * 1024)  # past one part: a multipart upload has begun
        raise OSError(28, "No space left on device")

    with pytest.raises(OSError):
        await storage.write(JOB, "0.mp4", breaks_midway(), "video/mp4")
    with pytest.raises(OSError):
        await storage.write(JOB, "1.mp4", breaks_midway(), "video/mp4")

    assert await storage.read_all(JOB, "0.mp4") == b"old"
    assert await storage.stat(JOB, "1.mp4") is None


async def test_a_small_file_that_fails_midway_leaves_nothing(
    storage: ResultStorage, tmp_path: Path
) -> None:
    async def breaks_soon() -> AsyncIterator[bytes]:
        yield b"x" * 100
        raise OSError(28, "No space left on device")

    with pytest.raises(OSError):
        await storage.write(JOB, "0.png", breaks_soon(), "image/png")
    assert await storage.stat(JOB, "0.png") is None
    assert await asyncio.to_thread(lambda: list(tmp_path.rglob("*.part"))) == []


async def test_files_small_and_past_the_gathered_size_are_written_whole(
    storage: ResultStorage,
) -> None:
    for name, size in (("0.png", 10), ("1.png", 1024 * 1024), ("2.png", 1024 * 1024 + 1)):
        data = hashlib.sha256(name.encode()).digest() * (size // 32 + 1)
        assert await storage.write(JOB, name, chunks_of(data[:size], 1000), "image/png") == size
        assert await storage.read_all(JOB, name) == data[:size]


async def test_missing_files_and_unsafe_names_have_no_metadata(storage: ResultStorage) -> None:
    assert await storage.stat(JOB, "0.png") is None
    assert await storage.read_all(JOB, "0.png") is None
    assert await storage.stat("job-../../etc", "passwd") is None
    assert await storage.stat(JOB, "../0.png") is None


async def test_delete_removes_every_file_of_the_job_and_only_those(storage: ResultStorage) -> None:
    for name in ("0.png", "1.png"):
        await storage.write(JOB, name, chunks_of(PNG), "image/png")
    await storage.write(OTHER, "0.png", chunks_of(PNG), "image/png")

    await storage.delete(JOB)
    await storage.delete(JOB)  # nothing left: not an error

    assert await storage.stat(JOB, "0.png") is None
    assert await storage.stat(JOB, "1.png") is None
    assert await storage.read_all(OTHER, "0.png") == PNG


async def test_a_job_written_again_after_its_files_were_deleted_gets_them_back(
    storage: ResultStorage,
) -> None:
    """A second file of a job, then the job's folder removed and written again (a purged
    job retried): each write makes what it needs."""
    await storage.write(JOB, "0.png", chunks_of(PNG), "image/png")
    await storage.write(JOB, "1.png", chunks_of(PNG), "image/png")
    await storage.delete(JOB)
    await storage.write(JOB, "0.png", chunks_of(b"again"), "image/png")
    assert await storage.read_all(JOB, "0.png") == b"again"
    assert await storage.stat(JOB, "1.png") is None


async def test_check_passes_on_a_writable_store(storage: ResultStorage) -> None:
    assert await storage.check()


async def test_an_image_saved_without_its_size_gets_it_from_the_file(
    storage: ResultStorage,
) -> None:
    unsized = Output(content_type="image/png", data=png_bytes(7, 5))  # as Replicate's are
    stored = await storage.save(JOB, 0, unsized)
    assert (stored.width, stored.height) == (7, 5)


async def test_a_size_the_provider_gave_is_kept_and_non_images_have_none(
    storage: ResultStorage,
) -> None:
    sized = Output(content_type="image/png", data=png_bytes(7, 5), width=70, height=50)
    video = Output(content_type="video/mp4", data=b"\x00\x00\x00\x18ftypmp42")
    broken = Output(content_type="image/png", data=b"\x89PNG\r\n\x1a\nnot really")
    kept, clip, bad = [await storage.save(JOB, i, o) for i, o in enumerate((sized, video, broken))]
    assert (kept.width, kept.height) == (70, 50)
    assert (clip.width, clip.height) == (None, None)
    assert (bad.width, bad.height) == (None, None)
