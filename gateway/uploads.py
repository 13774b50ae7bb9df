"""Files a client uploads as a job's input (an image to edit, a video's first frame).

An upload is held to the rules of an inline image (``gateway/inline_media.py``): at most
``BACKSERV_MAX_INPUT_BYTES`` (413 ``input_too_large``) and a PNG, JPEG, WebP or GIF by its
magic numbers, whatever its declared type (400 ``unsupported_image_type``). It is then kept
with the job's result files, in the result storage (``gateway/results.py``), and the job's
input holds its signed URL, never its bytes: a job row stays small, whatever is uploaded.

The files are stored under the id the job will have (``JobRequest.job_id``), before the job
exists, so they go wherever the job's files go: its retention, ``DELETE /v1/videos/{id}``,
a purge. They are named from ``UPLOAD_INDEX`` on (``900.png``), apart from the outputs
(``0.png``, ...), and are not listed in the job's result. A submit that fails, or that
replays an earlier job, discards them.

The sandbox and local providers read such a URL straight from storage (``OwnFiles``); a
hosted provider (fal, Replicate) downloads it, so it needs ``BACKSERV_BASE_URL`` to be a URL
it can reach, as a provider webhook does.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from gateway.errors import InvalidRequest, PayloadTooLarge
from gateway.inline_media import IMAGE_TYPES, sniff
from gateway.results import ResultLinks
from gateway.storage import ResultStorage
from providers.base import Output

#: the index of a job's first uploaded file (its outputs count from 0)
UPLOAD_INDEX = 900


@dataclass(frozen=True)
class Upload:
    """One uploaded file, as the client sent it (nothing checked yet)."""

    field: str
    filename: str
    content_type: str | None
    data: bytes


class Uploads:
    def __init__(self, storage: ResultStorage, links: ResultLinks, max_bytes: int) -> None:
        self.storage = storage
        self.links = links
        #: the most bytes one uploaded image may have (BACKSERV_MAX_INPUT_BYTES)
        self.max_bytes = max_bytes

    def check(self, upload: Upload, param: str) -> str:
        """The upload's media type, sniffed; 413/400 naming ``param`` when it is refused."""
        if len(upload.data) > self.max_bytes:
            raise PayloadTooLarge(
                f"Invalid '{param}': the file '{upload.filename}' is {len(upload.data)} bytes; "
                f"the limit is {self.max_bytes} bytes (BACKSERV_MAX_INPUT_BYTES).",
                param=param,
                code="input_too_large",
            )
        if not upload.data:
            raise InvalidRequest(
                f"Invalid '{param}': the file '{upload.filename}' is empty.",
                param=param,
                code="empty_file",
            )
        found = sniff(upload.data)
        if found not in IMAGE_TYPES:
            raise InvalidRequest(
                f"Invalid '{param}': the file '{upload.filename}' is not an image of a "
                "supported type (PNG, JPEG, WebP or GIF, recognised by its content).",
                param=param,
                code="unsupported_image_type",
            )
        return found

    async def store(self, job_id: str, uploads: list[tuple[str, Upload]]) -> list[str]:
        """Check and store ``(param, upload)`` pairs for job ``job_id``; their signed URLs,
        in order. Every upload is checked before any is stored."""
        types = [self.check(upload, param) for param, upload in uploads]
        expires = int(time.time()) + self.links.ttl
        urls = []
        try:
            for i, ((_, upload), media_type) in enumerate(zip(uploads, types, strict=True)):
                output = Output(media_type, data=upload.data)
                stored = await self.storage.save(job_id, UPLOAD_INDEX + i, output)
                urls.append(self.links.signer.url(job_id, stored.name, expires))
        except BaseException:
            await self.discard(job_id)
            raise
        return urls

    async def discard(self, job_id: str) -> None:
        """Delete what ``store`` kept for a job that was not created."""
        await self.storage.delete(job_id)
