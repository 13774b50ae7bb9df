"""URLs fit for a log line: without user info, query string or fragment.

A URL a client gives (a webhook target, an input image) or a provider answers with (a signed
CDN link) may carry a credential: ``https://user:pw@host/``, ``.../hook?token=...``,
``?X-Amz-Signature=...``. The gateway's own log lines show a URL only through
``redact_url``. Libraries that log URLs themselves get ``RedactUrlArgs`` on their logger
(``gateway.observability.logs`` installs it on ``LOGGERS``): httpx's ``HTTP Request: POST <url>
"HTTP/1.1 500 ..."`` line for every request its clients make (webhooks, Replicate; fal calls
and downloads log the same line through ``redact_url``, gateway/lean_client.py), and
uvicorn's access line (off by default; a path with its query).
"""

from __future__ import annotations

import logging
from urllib.parse import urlsplit, urlunsplit

import httpx

#: the loggers whose records carry URLs among their arguments
LOGGERS = ("httpx", "uvicorn.access")


def redact_url(url: object) -> str:
    """``url`` (a string, an ``httpx.URL``, or a path) with its user info, query string and
    fragment removed: scheme, host, port and path are what a log reader needs."""
    text = str(url)
    try:
        parts = urlsplit(text)
    except ValueError:  # e.g. an unclosed "[" in the host
        return "<a URL that does not parse>"
    host = parts.netloc.rpartition("@")[2]
    return urlunsplit((parts.scheme, host, parts.path, "", ""))


class RedactUrlArgs(logging.Filter):
    """Passes every record, each of its URL arguments through ``redact_url``: an
    ``httpx.URL``, or a string that starts with ``http://``, ``https://`` or ``/`` and holds a
    query, a fragment or user info. Installed on a logger, it applies before any handler
    (a test's capture included) sees the record."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.args, tuple) and any(map(_is_url, record.args)):
            record.args = tuple(redact_url(a) if _is_url(a) else a for a in record.args)
        return True


def _is_url(value: object) -> bool:
    if isinstance(value, httpx.URL):
        return True
    return (
        isinstance(value, str)
        and value.startswith(("http://", "https://", "/"))
        and any(mark in value for mark in "?#@")
    )
