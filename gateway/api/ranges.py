"""A result file served from any storage backend: ``HEAD``, ``Range`` and validators.

Local files are served by Starlette's ``FileResponse``; a file in a bucket is streamed by
``stored_file_response``, which answers the way ``FileResponse`` does for what clients use:
``Accept-Ranges: bytes``, ``ETag`` and ``Last-Modified``; one range (``bytes=a-b``,
``bytes=a-``, ``bytes=-n``) as 206 with ``Content-Range``; a range starting past the end as
416 with ``Content-Range: bytes */size``; a malformed one as 400; ``If-Range`` that does not
match as the whole file. Several ranges in one request are answered with the whole file (as
RFC 9110 allows) rather than ``multipart/byteranges``.
"""

from __future__ import annotations

from email.utils import formatdate

from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response, StreamingResponse

from gateway.digits import parse_digits
from gateway.storage import FileInfo, ResultStorage


class BadRange(Exception):
    def __init__(self, status: int, message: str = "") -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def parse_range(header: str, size: int) -> tuple[int, int] | None:
    """``[start, end)`` of a one-range ``Range`` header; None for the whole file (several
    ranges, or none usable); ``BadRange`` for a malformed (400) or unsatisfiable (416) one."""
    units, sep, spec = header.partition("=")
    if not sep:
        raise BadRange(400, "Malformed range header.")
    if units.strip().lower() != "bytes":
        raise BadRange(400, "Only support bytes range")
    parts = [p.strip() for p in spec.split(",") if p.strip() not in ("", "-")]
    if not parts:
        raise BadRange(400, "Range header: range must be requested")
    if len(parts) > 1:
        return None
    first, dash, last = parts[0].partition("-")
    start_n, end_n = parse_digits(first.strip()), parse_digits(last.strip())
    if not dash or (first.strip() and start_n is None) or (last.strip() and end_n is None):
        return None  # not numeric: ignored, as FileResponse does
    if start_n is None:  # bytes=-n: the last n bytes
        if end_n is None:
            return None
        start, end = max(size - end_n, 0), size
    else:
        start = start_n
        end = end_n + 1 if end_n is not None and end_n < size else size
    if not 0 <= start < size:
        raise BadRange(416)
    if start >= end:
        raise BadRange(400, "Range header: start must be less than end")
    return start, end


def _validators(info: FileInfo) -> dict[str, str]:
    headers = {"last-modified": formatdate(info.modified, usegmt=True)}
    if info.etag:
        headers["etag"] = info.etag if info.etag.startswith(('"', "W/")) else f'"{info.etag}"'
    return headers


def stored_file_response(
    request: Request,
    storage: ResultStorage,
    job_id: str,
    name: str,
    info: FileInfo,
    headers: dict[str, str],
) -> Response:
    """The file (or the range asked for) streamed from ``storage``."""
    base = {
        **headers,
        **_validators(info),
        "accept-ranges": "bytes",
        "content-type": info.content_type,
    }
    start, end = 0, info.size
    status = 200
    header = request.headers.get("range")
    if_range = request.headers.get("if-range")
    if header is not None and (if_range is None or if_range in base.values()):
        try:
            chosen = parse_range(header, info.size)
        except BadRange as exc:
            extra = {"content-range": f"bytes */{info.size}"} if exc.status == 416 else {}
            return PlainTextResponse(exc.message, status_code=exc.status, headers=extra)
        if chosen is not None:
            start, end = chosen
            status = 206
            base["content-range"] = f"bytes {start}-{end - 1}/{info.size}"
    base["content-length"] = str(end - start)
    if request.method == "HEAD":
        return Response(status_code=status, headers=base)
    return StreamingResponse(storage.read(job_id, name, start, end), status, headers=base)
