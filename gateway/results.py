"""Result files: provider outputs copied to storage, served at signed, expiring URLs.

``ResultStorage`` keeps the files (a local directory; the seam for another backend);
``ResultLinks`` is the one rule for a job's result URLs (signed by ``UrlSigner``, expiring
``ttl`` seconds after the job completed); ``OwnFiles`` reads back a result URL given as input.

A result URL is ``{public_url}/files/{job_id}/{name}?expires={unix}&sig={hmac}``. The signature
(HMAC-SHA256 with the gateway's secret over job id, file name and expiry) lets the URL open in
a browser without an Authorization header, while nobody can forge or extend one. The expiry is
fixed when the job completes (completion + ``file_ttl_seconds``), so a job's URL does not
change from one poll to the next.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import io
import re
import shutil
import time
import warnings
from dataclasses import dataclass
from pathlib import Path

from PIL import Image

from gateway.digits import parse_digits
from gateway.errors import (
    InvalidRequest,
    PayloadTooLarge,
    ProviderInputError,
    ProviderTransientError,
    ProviderUnavailable,
    UnresolvableHost,
)
from gateway.fetch import FetchFailed, GuardedFetcher, fetch_guarded
from gateway.inline_media import decode_data_url, is_data_url
from gateway.jobs import Job
from gateway.netguard import AllowList
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


@dataclass(frozen=True)
class StoredFile:
    name: str
    content_type: str
    size: int
    width: int | None = None
    height: int | None = None


class UrlSigner:
    def __init__(self, secret: bytes, base_url: str) -> None:
        self._secret = secret
        self.base_url = base_url.rstrip("/")

    def rekey(self, secret: bytes) -> None:
        self._secret = secret

    def _sig(self, job_id: str, name: str, expires: int) -> str:
        mac = hmac.new(self._secret, f"{job_id}/{name}:{expires}".encode(), hashlib.sha256)
        return base64.urlsafe_b64encode(mac.digest()[:20]).decode().rstrip("=")

    def url(self, job_id: str, name: str, expires: int) -> str:
        sig = self._sig(job_id, name, expires)
        return f"{self.base_url}/files/{job_id}/{name}?expires={expires}&sig={sig}"

    def verify(self, job_id: str, name: str, expires: int, sig: str) -> bool:
        # as bytes: compare_digest refuses str with non-ASCII characters (a TypeError, a 500)
        return hmac.compare_digest(self._sig(job_id, name, expires).encode(), sig.encode())


@dataclass(frozen=True)
class ResultLinks:
    """A job's result URLs: signed, and expiring ``ttl`` seconds after the job completed
    (fixed then, so a job's URLs do not change from one poll to the next)."""

    signer: UrlSigner
    ttl: int

    def expires(self, job: Job) -> int:
        return int((job.completed_at or job.created_at) + self.ttl)

    def url(self, job: Job, name: str) -> str:
        return self.signer.url(job.id, name, self.expires(job))


class ResultStorage:
    def __init__(
        self,
        root: Path,
        *,
        max_bytes: int,
        download_timeout: float = 60.0,
        allow: AllowList | None = None,
        fetcher: GuardedFetcher | None = None,
    ) -> None:
        #: the long-lived download client (None: one made per download)
        self.fetcher = fetcher
        self.root = root
        self.max_bytes = max_bytes
        self.download_timeout = download_timeout
        #: non-public hosts and networks outputs may be fetched from (BACKSERV_FETCH_ALLOW)
        self.allow = allow or AllowList()

    def path(self, job_id: str, name: str) -> Path | None:
        """The file's path, or None when the names are not ones this storage produces."""
        if not _SAFE_JOB.match(job_id) or not _SAFE_NAME.match(name):
            return None
        return self.root / job_id[4:6] / job_id / name

    async def save(self, job_id: str, index: int, output: Output) -> StoredFile:
        data = output.data
        content_type = output.content_type
        if data is None:
            if output.url is None:
                raise ProviderUnavailable("the provider returned an output with no data or URL")
            if is_data_url(output.url):
                data, content_type = self.decode_inline(output.url, content_type)
            else:
                data, content_type = await self.download(output.url, content_type)
        if len(data) > self.max_bytes:
            raise ProviderUnavailable(
                f"the provider's output is {len(data)} bytes; the limit is {self.max_bytes}"
            )
        ext = EXTENSIONS.get(content_type, "bin")
        name = f"{index}.{ext}"
        target = self.path(job_id, name)
        if target is None:
            raise ValueError(f"unsafe file name for job {job_id!r}")
        await asyncio.to_thread(_write_atomic, target, data)
        width, height = output.width, output.height
        if width is None or height is None:  # e.g. Replicate: read them from the file
            width, height = image_size(data, content_type) or (width, height)
        return StoredFile(name, content_type, len(data), width, height)

    async def download(self, url: str, expected_type: str) -> tuple[bytes, str]:
        """A provider's output, fetched through the SSRF guard (``gateway.fetch``)."""
        try:
            return await fetch_guarded(
                url,
                allow=self.allow,
                max_bytes=self.max_bytes,
                timeout=self.download_timeout,
                accept=("image/", "video/"),
                default_type=expected_type,
                param="output_url",
                fetcher=self.fetcher,
            )
        except UnresolvableHost as exc:
            raise ProviderTransientError(
                f"downloading the provider's output failed: {exc.message}"
            ) from None
        except InvalidRequest as exc:  # not a URL, or a non-public address: not a CDN
            raise ProviderUnavailable(
                f"the provider's output URL is refused: {exc.message}"
            ) from None
        except FetchFailed as exc:
            if exc.reason == "content_type":
                raise ProviderUnavailable(
                    f"the provider's output is not media: {exc.message}"
                ) from None
            if exc.reason == "too_large":
                raise ProviderUnavailable(
                    f"the provider's output exceeds the {self.max_bytes}-byte limit"
                ) from None
            raise ProviderTransientError(
                f"downloading the provider's output failed: {exc.message}"
            ) from exc

    def decode_inline(self, url: str, expected_type: str) -> tuple[bytes, str]:
        """A provider's output sent as a ``data:`` URL, through the one decoder
        (``gateway.inline_media``): bounded, strict, typed by its content."""
        try:
            media = decode_data_url(url, param="output_url", max_bytes=self.max_bytes)
        except PayloadTooLarge:
            raise ProviderUnavailable(
                f"the provider's output exceeds the {self.max_bytes}-byte limit"
            ) from None
        except InvalidRequest as exc:
            raise ProviderUnavailable(f"the provider's output is refused: {exc.message}") from None
        content_type = media.media_type
        if content_type == "application/octet-stream":
            content_type = expected_type
        if not content_type.startswith(("image/", "video/")):
            raise ProviderUnavailable(f"the provider's output is not media: {content_type}")
        return media.data, content_type

    async def delete(self, job_id: str) -> None:
        folder = self.root / job_id[4:6] / job_id
        if _SAFE_JOB.match(job_id):
            await asyncio.to_thread(shutil.rmtree, folder, True)


def _write_atomic(target: Path, data: bytes) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(target.name + ".part")
    tmp.write_bytes(data)
    tmp.replace(target)


class OwnFiles:
    """Reads the gateway's own result URLs from disk, so one job's output can feed another.

    Called with any input URL; answers None for URLs that are not this gateway's files.
    """

    def __init__(self, storage: ResultStorage, signer: UrlSigner) -> None:
        self.storage = storage
        self.signer = signer

    async def __call__(self, url: str) -> bytes | None:
        prefix = self.signer.base_url + "/files/"
        if not url.startswith(prefix):
            return None
        path_part, _, query = url[len(prefix) :].partition("?")
        job_id, _, name = path_part.partition("/")
        params = dict(p.partition("=")[::2] for p in query.split("&") if p)
        expires = parse_digits(params.get("expires", ""))
        if not (
            expires is not None
            and self.signer.verify(job_id, name, expires, params.get("sig", ""))
            and expires >= time.time()
        ):
            raise ProviderInputError("The input URL is a result URL that is not valid or expired.")
        path = self.storage.path(job_id, name)
        if path is None or not path.is_file():
            raise ProviderInputError("The input URL is a result file that no longer exists.")
        return await asyncio.to_thread(path.read_bytes)


def image_size(data: bytes, content_type: str) -> tuple[int, int] | None:
    """An image's ``(width, height)`` from its header (Pillow reads no pixels), or None for
    anything that is not an image Pillow can read."""
    if not content_type.startswith("image/"):
        return None
    try:
        with warnings.catch_warnings():  # a huge image's size is still its size
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data)) as image:
                width, height = image.size
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError):
        return None
    return (int(width), int(height)) if width > 0 and height > 0 else None
