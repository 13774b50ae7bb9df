"""Result files in S3-compatible object storage (AWS S3, MinIO, Cloudflare R2, ...).

Chosen by ``BACKSERV_STORAGE_URL=s3://bucket/prefix``; the client is obstore (Rust's
``object_store`` crate: signing, retries, multipart uploads, presigned URLs), so no S3
signing is written here. What the store guarantees:

- **Atomic, streamed writes.** A file up to ``PART_SIZE`` is one PUT (an object appears
  whole or not at all). A larger one is a multipart upload fed chunk by chunk from the
  download, at most ``CONCURRENCY`` parts in memory; it becomes visible only when it
  completes, and a failed one is aborted. A process killed mid-upload leaves an incomplete
  upload that no reader can see (a bucket lifecycle rule removes those; see the README).
- **Errors translated at the edge.** An unreachable endpoint, a missing bucket or a refused
  credential raises ``StorageUnavailable`` naming the bucket and the cause; the runner waits
  that out with the output in hand, so a job is never COMPLETED without its object.
"""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import TYPE_CHECKING

import obstore
from obstore.exceptions import BaseError
from obstore.store import S3Store

from gateway.errors import StorageUnavailable
from gateway.storage.base import (
    FileInfo,
    ResultStorage,
    content_type_of,
    relative_key,
    safe_job,
    safe_names,
)
from gateway.storage.bucket import BucketConfig
from gateway.storage.sources import OutputSource

if TYPE_CHECKING:
    from obstore.store import ClientConfig, RetryConfig, S3Config

#: the size of one multipart part (S3's minimum, except for the last part)
PART_SIZE = 5 * 1024 * 1024
#: parts uploaded at once per file (each held in memory while it uploads)
CONCURRENCY = 4
READ_CHUNK = 256 * 1024
_FAILURES = (BaseError, OSError, TimeoutError)


def _client(config: BucketConfig) -> S3Store:
    s3: S3Config = {}
    if config.endpoint_url:
        s3["endpoint"] = config.endpoint_url
    if config.region:
        s3["region"] = config.region
    if config.access_key_id and config.secret_access_key:
        s3["access_key_id"] = config.access_key_id
        s3["secret_access_key"] = config.secret_access_key
        if config.session_token:
            s3["session_token"] = config.session_token
    options: ClientConfig = {
        "timeout": timedelta(seconds=config.timeout_seconds),
        "connect_timeout": timedelta(seconds=min(5.0, config.timeout_seconds)),
        "allow_http": bool(config.endpoint_url and config.endpoint_url.startswith("http:")),
    }
    # a few quick retries of 5xx answers and dropped connections, all within one timeout
    retry: RetryConfig = {
        "max_retries": 3,
        "retry_timeout": timedelta(seconds=config.timeout_seconds),
        "backoff": {
            "init_backoff": timedelta(milliseconds=100),
            "max_backoff": timedelta(seconds=2),
        },
    }
    return S3Store(
        config.bucket,
        prefix=config.prefix or None,
        config=s3,
        client_options=options,
        retry_config=retry,
    )


class ObjectStorage(ResultStorage):
    kind = "s3"

    def __init__(self, config: BucketConfig, sources: OutputSource) -> None:
        super().__init__(sources)
        self.config = config
        self.store = _client(config)

    def _unavailable(self, doing: str, exc: BaseException) -> StorageUnavailable:
        cause = " ".join(str(exc).split())[:300] or type(exc).__name__
        return StorageUnavailable(f"{doing} in {self.config.url} failed: {cause}")

    async def write(
        self, job_id: str, name: str, chunks: AsyncIterator[bytes], content_type: str
    ) -> int:
        if not safe_names(job_id, name):
            raise ValueError(f"unsafe file name for job {job_id!r}")
        key = relative_key(job_id, name)
        attributes = {"Content-Type": content_type_of(name)}
        first, rest = await _first_part(chunks)
        source: _Counted | None = None
        try:
            if rest is None:  # small: one PUT
                await obstore.put_async(
                    self.store, key, bytes(first), attributes=attributes, use_multipart=False
                )
                return len(first)
            source = _Counted(first, rest)
            await obstore.put_async(
                self.store,
                key,
                source,
                attributes=attributes,
                chunk_size=PART_SIZE,
                max_concurrency=CONCURRENCY,
            )
            return source.size
        except _FAILURES as exc:
            if source is not None and exc is source.error:
                raise  # the output's own failure (a download cut off): not the bucket's
            raise self._unavailable(f"writing {key}", exc) from exc

    async def stat(self, job_id: str, name: str) -> FileInfo | None:
        if not safe_names(job_id, name):
            return None
        key = relative_key(job_id, name)
        try:
            meta = await obstore.head_async(self.store, key)
        except FileNotFoundError:
            return None
        except _FAILURES as exc:
            raise self._unavailable(f"reading {key}", exc) from exc
        return FileInfo(
            meta["size"], content_type_of(name), meta["last_modified"].timestamp(), meta["e_tag"]
        )

    async def read(self, job_id: str, name: str, start: int, end: int) -> AsyncIterator[bytes]:
        if not safe_names(job_id, name) or end <= start:
            return
        key = relative_key(job_id, name)
        try:
            result = await obstore.get_async(self.store, key, options={"range": (start, end)})
            async for chunk in result.stream(min_chunk_size=READ_CHUNK):
                yield bytes(chunk)
        except _FAILURES as exc:
            raise self._unavailable(f"reading {key}", exc) from exc

    async def delete(self, job_id: str) -> None:
        if not safe_job(job_id):
            return
        folder = relative_key(job_id).rstrip("/")
        try:
            async for batch in obstore.list(self.store, folder):
                await obstore.delete_async(self.store, [meta["path"] for meta in batch])
        except _FAILURES as exc:
            raise self._unavailable(f"deleting {folder}", exc) from exc

    async def check(self) -> str:
        """Write, read back and delete a small probe object."""
        key = f".backserv-probe/{secrets.token_hex(8)}"
        data = secrets.token_bytes(16)
        try:
            await obstore.put_async(self.store, key, data, use_multipart=False)
            try:
                got = await (await obstore.get_async(self.store, key)).bytes_async()
            finally:
                await obstore.delete_async(self.store, key)
        except _FAILURES as exc:
            raise self._unavailable("writing a probe object", exc) from None
        if bytes(got) != data:
            raise StorageUnavailable(f"{self.config.url} returned other bytes than were written")
        return f"bucket {self.config.url}" + (
            f" at {self.config.endpoint_url}" if self.config.endpoint_url else ""
        )

    async def presign(self, job_id: str, name: str, seconds: int) -> str | None:
        if not safe_names(job_id, name):
            return None
        key = relative_key(job_id, name)
        try:
            return await obstore.sign_async(self.store, "GET", key, timedelta(seconds=seconds))
        except _FAILURES as exc:
            raise self._unavailable(f"signing a URL for {key}", exc) from exc


async def _first_part(
    chunks: AsyncIterator[bytes],
) -> tuple[bytearray, AsyncIterator[bytes] | None]:
    """Up to one part's bytes from ``chunks``, and the rest (None when that was all)."""
    first = bytearray()
    iterator = aiter(chunks)
    while len(first) < PART_SIZE:
        try:
            first += await anext(iterator)
        except StopAsyncIteration:
            return first, None
    return first, iterator


class _Counted:
    """The first part, then the rest of the chunks, counting the bytes handed over and
    keeping the exception the chunks raised (the upload re-raises it as it is)."""

    def __init__(self, first: bytearray, rest: AsyncIterator[bytes]) -> None:
        self.size = 0
        self.error: BaseException | None = None
        self._first: bytearray | None = first
        self._rest = rest

    def __aiter__(self) -> _Counted:
        return self

    async def __anext__(self) -> bytes:
        if self._first is not None:
            chunk, self._first = bytes(self._first), None
        else:
            try:
                chunk = await anext(self._rest)
            except StopAsyncIteration:
                raise
            except BaseException as exc:
                self.error = exc
                raise
        self.size += len(chunk)
        return chunk
