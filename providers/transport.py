"""What an httpx error says about where its request went, for error messages."""

from __future__ import annotations

import httpx

__all__ = ["request_host"]


def request_host(exc: httpx.HTTPError) -> str | None:
    """The host (and port, when not the scheme's) ``exc``'s request went to, if known."""
    try:
        url = exc.request.url
    except RuntimeError:  # an error raised outside a request
        return None
    return url.netloc.decode("ascii", "replace") or None
