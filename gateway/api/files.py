"""Result files: ``GET /files/{job_id}/{name}?expires=…&sig=…`` (no Authorization needed)."""

from __future__ import annotations

import time

from starlette.requests import Request
from starlette.responses import FileResponse, Response
from starlette.routing import Route

from gateway.errors import Gone, NotFound, PermissionDenied
from gateway.storage import ResultStorage, UrlSigner


class FilesAPI:
    def __init__(self, storage: ResultStorage, signer: UrlSigner) -> None:
        self.storage = storage
        self.signer = signer

    def routes(self) -> list[Route]:
        return [Route("/files/{job_id}/{name}", self.get_file, methods=["GET", "HEAD"])]

    async def get_file(self, request: Request) -> Response:
        job_id = request.path_params["job_id"]
        name = request.path_params["name"]
        expires_raw = request.query_params.get("expires", "")
        sig = request.query_params.get("sig", "")
        if not expires_raw.isdigit() or not sig:
            raise PermissionDenied(
                "This file URL is not signed; use the URL from the job's result.",
                code="unsigned_url",
            )
        expires = int(expires_raw)
        if not self.signer.verify(job_id, name, expires, sig):
            raise PermissionDenied("This file URL's signature is not valid.", code="bad_signature")
        if expires < time.time():
            raise Gone(
                "This result file has expired: results are kept for a limited time after the job "
                "completes.",
                code="url_expired",
            )
        path = self.storage.path(job_id, name)
        if path is None or not path.is_file():
            raise NotFound("The file no longer exists.", code="file_not_found")
        return FileResponse(path, headers={"Cache-Control": "private, max-age=3600"})
