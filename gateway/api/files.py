"""Result files: ``GET /files/{job_id}/{name}?expires=…&sig=…`` (no Authorization needed).

A URL past its expiry answers 410 Gone. So does a signed, unexpired URL whose file the
retention janitor already deleted (the file lifetime was shortened after the URL was made),
or whose job record is gone: the file existed and has expired, which 404 would not say.
"""

from __future__ import annotations

import time

from starlette.requests import Request
from starlette.responses import FileResponse, Response
from starlette.routing import Route

from gateway.digits import parse_digits
from gateway.errors import Gone, NotFound, PermissionDenied
from gateway.results import ResultStorage, UrlSigner
from gateway.service import JobService

_EXPIRED = (
    "This result file has expired: results are kept for a limited time after the job completes."
)


class FilesAPI:
    def __init__(
        self, storage: ResultStorage, signer: UrlSigner, service: JobService | None = None
    ) -> None:
        self.storage = storage
        self.signer = signer
        self.service = service

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
        path = self.storage.path(job_id, name)
        if path is None:
            raise NotFound("The file no longer exists.", code="file_not_found")
        if not path.is_file():
            if await self._purged(job_id):
                raise Gone(_EXPIRED, code="file_expired")
            raise NotFound("The file no longer exists.", code="file_not_found")
        return FileResponse(path, headers={"Cache-Control": "private, max-age=3600"})

    async def _purged(self, job_id: str) -> bool:
        """Whether retention removed the job's files (or its whole record)."""
        return self.service is not None and await self.service.files_purged(job_id)
