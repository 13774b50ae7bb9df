"""Result files: ``GET /files/{job_id}/{name}?expires=…&sig=…`` (no Authorization needed).

The file comes from the storage backend (``gateway/storage/``), so a URL works on every
replica when the files are in a bucket. With ``redirect`` (``BACKSERV_STORAGE_DELIVERY=
redirect``) a GET of a file in a bucket answers 307 to a presigned URL of the object (valid
``presign_seconds``, never past the signed URL's own expiry); HEAD is answered here (a
presigned GET URL does not sign HEAD). ``Range``, ``HEAD`` and ``Content-Type`` behave the
same for every backend (``gateway/api/ranges.py``).

A URL past its expiry answers 410 Gone. So does a signed, unexpired URL whose file the
retention janitor already deleted (the file lifetime was shortened after the URL was made),
or whose job record is gone: the file existed and has expired, which 404 would not say.
"""

from __future__ import annotations

import time

from starlette.requests import Request
from starlette.responses import FileResponse, RedirectResponse, Response
from starlette.routing import Route

from gateway.api.ranges import stored_file_response
from gateway.digits import parse_digits
from gateway.errors import Gone, NotFound, PermissionDenied
from gateway.results import UrlSigner
from gateway.service import JobService
from gateway.storage import LocalStorage, ResultStorage, safe_names

_EXPIRED = (
    "This result file has expired: results are kept for a limited time after the job completes."
)


class FilesAPI:
    def __init__(
        self,
        storage: ResultStorage,
        signer: UrlSigner,
        service: JobService | None = None,
        *,
        redirect: bool = False,
        presign_seconds: int = 900,
    ) -> None:
        self.storage = storage
        self.signer = signer
        self.service = service
        self.redirect = redirect
        self.presign_seconds = presign_seconds

    def routes(self) -> list[Route]:
        return [Route("/files/{job_id}/{name}", self.get_file, methods=["GET", "HEAD"])]

    async def get_file(self, request: Request) -> Response:
        job_id = request.path_params["job_id"]
        name = request.path_params["name"]
        expires_raw = request.query_params.get("expires", "")
        sig = request.query_params.get("sig", "")
        expires = parse_digits(expires_raw)
        if expires is None or not sig:
            raise PermissionDenied(
                "This file URL is not signed; use the URL from the job's result.",
                code="unsigned_url",
            )
        if not self.signer.verify(job_id, name, expires, sig):
            raise PermissionDenied("This file URL's signature is not valid.", code="bad_signature")
        if expires < time.time():
            raise Gone(_EXPIRED, code="url_expired")
        if not safe_names(job_id, name):  # no storage path or key is ever made of these
            raise NotFound("The file no longer exists.", code="file_not_found")
        info = await self.storage.stat(job_id, name)
        if info is None:
            if await self._purged(job_id):
                raise Gone(_EXPIRED, code="file_expired")
            raise NotFound("The file no longer exists.", code="file_not_found")
        headers = {"Cache-Control": "private, max-age=3600"}
        if self.redirect and request.method == "GET":
            seconds = min(self.presign_seconds, max(1, int(expires - time.time())))
            url = await self.storage.presign(job_id, name, seconds)
            if url is not None:
                return RedirectResponse(url, 307, headers={"Cache-Control": "no-store"})
        if isinstance(self.storage, LocalStorage):
            path = self.storage.path(job_id, name)
            if path is not None:
                return FileResponse(path, headers=headers)
        return stored_file_response(request, self.storage, job_id, name, info, headers)

    async def _purged(self, job_id: str) -> bool:
        """Whether retention removed the job's files (or its whole record)."""
        return self.service is not None and await self.service.files_purged(job_id)
