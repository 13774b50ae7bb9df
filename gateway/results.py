"""Result files: provider outputs copied to storage, served at signed, expiring URLs.

``gateway.storage`` keeps the files (a local directory or an S3-compatible bucket);
``ResultLinks`` is the one rule for a job's result URLs (signed by ``UrlSigner``, expiring
``ttl`` seconds after the job completed); ``OwnFiles`` reads back a result URL given as input.

A result URL is ``{public_url}/files/{job_id}/{name}?expires={unix}&sig={hmac}``. The signature
(HMAC-SHA256 with the gateway's secret over job id, file name and expiry) lets the URL open in
a browser without an Authorization header, while nobody can forge or extend one. The expiry is
fixed when the job completes (completion + ``file_ttl_seconds``), so a job's URL does not
change from one poll to the next.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import time
from dataclasses import dataclass

from gateway.digits import parse_digits
from gateway.errors import ProviderInputError
from gateway.jobs import Job
from gateway.storage import ResultStorage


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
        data = await self.storage.read_all(job_id, name)
        if data is None:
            raise ProviderInputError("The input URL is a result file that no longer exists.")
        return data
