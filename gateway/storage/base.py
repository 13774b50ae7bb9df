"""The result-storage seam: ``ResultStorage`` and what its backends share.

A backend keeps a job's files under ``{job_id[4:6]}/{job_id}/{name}`` and implements five
small operations (``write``, ``stat``, ``read``, ``delete``, ``check``); everything above
them is here, once: turning a provider's ``Output`` (bytes, a ``data:`` URL or a URL to
download) into a stream of chunks, and saving that stream under the file's name. No output
is ever held whole on its way from a provider's URL to the store.

``write`` is atomic: the file appears complete or not at all (a temporary file renamed, or
an object upload that only becomes visible when it completes). A backend that cannot be
reached raises ``StorageUnavailable`` (503), which the runner waits out with the output in
hand, so a job is never COMPLETED without its files and never paid for twice.
"""

from __future__ import annotations

import mimetypes
import re
from abc import ABC, abstractmethod
from collections.abc import AsyncIterator
from dataclasses import dataclass

from gateway.storage.dimensions import Head, image_size
from gateway.storage.sources import OutputSource
from providers.base import Output

EXTENSIONS = {
    "image/png": "png",
    "image/jpeg": "jpg",
    "image/webp": "webp",
    "image/gif": "gif",
    "video/mp4": "mp4",
    "video/webm": "webm",
}
_SAFE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
_SAFE_JOB = re.compile(r"^job-[0-9a-f]{24}$")


def safe_names(job_id: str, name: str) -> bool:
    """Whether the names are ones storage produces (nothing else is ever read or written)."""
    return bool(_SAFE_JOB.match(job_id) and _SAFE_NAME.match(name))


def safe_job(job_id: str) -> bool:
    return bool(_SAFE_JOB.match(job_id))


def relative_key(job_id: str, name: str = "") -> str:
    """``ab/job-ab.../name``: a file's place under the storage root (the folder without
    ``name``)."""
    return f"{job_id[4:6]}/{job_id}/{name}"


def content_type_of(name: str) -> str:
    """What a file is served as, from its extension: the same for every backend and for a
    redirect to the object store (``0.bin``, an LLM's text, is ``application/octet-stream``)."""
    return mimetypes.guess_type(name)[0] or "application/octet-stream"


@dataclass(frozen=True)
class StoredFile:
    name: str
    content_type: str
    size: int
    width: int | None = None
    height: int | None = None


@dataclass(frozen=True)
class FileInfo:
    """What a stored file is: its size, type and validators (for HTTP caching)."""

    size: int
    content_type: str
    modified: float
    etag: str | None = None


class ResultStorage(ABC):
    """Where result files live. ``sources`` turns a provider's outputs into byte streams."""

    #: "local" or "s3": what ``/readyz`` and the doctor call it
    kind: str = "local"

    def __init__(self, sources: OutputSource) -> None:
        self.sources = sources

    @property
    def max_bytes(self) -> int:
        return self.sources.max_bytes

    async def save(self, job_id: str, index: int, output: Output) -> StoredFile:
        """Copy one provider output into storage as ``{index}.{ext}``."""
        async with self.sources.open(output) as (content_type, chunks):
            name = f"{index}.{EXTENSIONS.get(content_type, 'bin')}"
            if not safe_names(job_id, name):
                raise ValueError(f"unsafe file name for job {job_id!r}")
            head = Head(chunks)
            size = await self.write(job_id, name, aiter(head), content_type)
        width, height = output.width, output.height
        if width is None or height is None:  # e.g. Replicate's: read them from the file
            width, height = image_size(bytes(head.data), content_type) or (width, height)
        return StoredFile(name, content_type, size, width, height)

    async def read_all(self, job_id: str, name: str, limit: int | None = None) -> bytes | None:
        """The file's bytes (at most ``limit``), or None when it does not exist."""
        info = await self.stat(job_id, name)
        if info is None:
            return None
        end = info.size if limit is None else min(info.size, limit)
        data = bytearray()
        async for chunk in self.read(job_id, name, 0, end):
            data += chunk
        return bytes(data[:end])

    @abstractmethod
    async def write(
        self, job_id: str, name: str, chunks: AsyncIterator[bytes], content_type: str
    ) -> int:
        """Store the chunks as the file, atomically; the number of bytes written."""

    @abstractmethod
    async def stat(self, job_id: str, name: str) -> FileInfo | None:
        """The file's metadata, or None when there is no such file (or unsafe names)."""

    @abstractmethod
    def read(self, job_id: str, name: str, start: int, end: int) -> AsyncIterator[bytes]:
        """Bytes ``start`` (inclusive) to ``end`` (exclusive) of the file, in chunks."""

    @abstractmethod
    async def delete(self, job_id: str) -> None:
        """Remove every file of the job (nothing there is not an error)."""

    @abstractmethod
    async def check(self) -> str:
        """Raise ``StorageUnavailable`` saying what is wrong unless files can be written and
        read back; else a short description of where they go."""

    async def presign(self, job_id: str, name: str, seconds: int) -> str | None:
        """A URL the file can be fetched at directly for ``seconds``, or None (local files)."""
        return None

    async def aclose(self) -> None:
        """Release the backend's connections (nothing to do for a directory)."""
        return None
