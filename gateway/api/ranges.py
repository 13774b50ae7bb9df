"""A result file served from any storage backend: ``HEAD``, ``Range`` and validators.

Local files are served by Starlette's ``FileResponse``; a file in a bucket is streamed by
``stored_file_response``, which answers the way ``FileResponse`` does for what clients use:
``Accept-Ranges: bytes``, ``ETag`` and ``Last-Modified``; one range (``bytes=a-b``,
``bytes=a-``, ``bytes=-n``) as 206 with ``Content-Range``; a range starting past the end as
416 with ``Content-Range: bytes */size``; a malformed one as 400; ``If-Range`` that does not
match as the whole file; several ranges (overlaps merged) as ``multipart/byteranges``.
"""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator
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


MAX_RANGES = 100


def parse_ranges(header: str, size: int) -> list[tuple[int, int]]:
    """The ``[start, end)`` spans of a ``Range`` header, sorted and merged; ``BadRange`` for a
    malformed (400) or unsatisfiable (416) one. Parts that are not numbers are ignored."""
    units, sep, spec = header.partition("=")
    if not sep:
        raise BadRange(400, "Malformed range header.")
    if units.strip().lower() != "bytes":
        raise BadRange(400, "Only support bytes range")
    if spec.count(",") + 1 > MAX_RANGES:
        raise BadRange(400, "Too many ranges")
    spans = [span for part in spec.split(",") if (span := _span(part.strip(), size))]
    if not spans:
        raise BadRange(400, "Range header: range must be requested")
    if any(not 0 <= start < size for start, _ in spans):
        raise BadRange(416)
    if any(start >= end for start, end in spans):
        raise BadRange(400, "Range header: start must be less than end")
    spans.sort()
    merged = [spans[0]]
    for start, end in spans[1:]:
        if start <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(merged[-1][1], end))
        else:
            merged.append((start, end))
    return merged


def _span(part: str, size: int) -> tuple[int, int] | None:
    first, dash, last = part.partition("-")
    first, last = first.strip(), last.strip()
    if not dash or not (first or last):
        return None
    start_n, end_n = parse_digits(first), parse_digits(last)
    if (first and start_n is None) or (last and end_n is None):
        return None
    if start_n is None:  # bytes=-n: the last n bytes
        return max(size - (end_n or 0), 0), size
    return start_n, (end_n + 1 if end_n is not None and end_n < size else size)


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
    spans = [(0, info.size)]
    status = 200
    header = request.headers.get("range")
    if_range = request.headers.get("if-range")
    if header is not None and (if_range is None or if_range in base.values()):
        try:
            spans = parse_ranges(header, info.size)
        except BadRange as exc:
            extra = {"content-range": f"bytes */{info.size}"} if exc.status == 416 else {}
            return PlainTextResponse(exc.message, status_code=exc.status, headers=extra)
        status = 206
    body: AsyncIterator[bytes]
    if len(spans) == 1:
        start, end = spans[0]
        if status == 206:
            base["content-range"] = f"bytes {start}-{end - 1}/{info.size}"
        base["content-length"] = str(end - start)
        body = storage.read(job_id, name, start, end)
    else:
        boundary = secrets.token_hex(13)
        parts = [_part_head(boundary, info, start, end) for start, end in spans]
        closing = f"--{boundary}--".encode("latin-1")
        length = sum(
            len(h) + (end - start) + 2 for h, (start, end) in zip(parts, spans, strict=True)
        )
        base["content-type"] = f"multipart/byteranges; boundary={boundary}"
        base["content-length"] = str(length + len(closing))
        body = _multipart(storage, job_id, name, spans, parts, closing)
    if request.method == "HEAD":
        return Response(status_code=status, headers=base)
    return StreamingResponse(body, status, headers=base)


def _part_head(boundary: str, info: FileInfo, start: int, end: int) -> bytes:
    return (
        f"--{boundary}\r\nContent-Type: {info.content_type}\r\n"
        f"Content-Range: bytes {start}-{end - 1}/{info.size}\r\n\r\n"
    ).encode("latin-1")


async def _multipart(
    storage: ResultStorage,
    job_id: str,
    name: str,
    spans: list[tuple[int, int]],
    heads: list[bytes],
    closing: bytes,
) -> AsyncIterator[bytes]:
    for head, (start, end) in zip(heads, spans, strict=True):
        yield head
        async for chunk in storage.read(job_id, name, start, end):
            yield chunk
        yield b"\r\n"
    yield closing
