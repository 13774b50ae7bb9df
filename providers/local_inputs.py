"""Input media for the local provider: the bytes behind an ``image_url``.

Tried in order: the injected ``fetch`` (the gateway's own result files), a ``data:`` URL
(the gateway's one decoder, ``gateway.inline_media``), then an http(s) download through the
SSRF guard (``gateway.fetch``: no loopback, private or metadata address unless
``BACKSERV_FETCH_ALLOW`` lists it) with a size cap and a time limit. Every failure is the
client's input error, naming the parameter.
"""

from __future__ import annotations

from gateway.errors import ProviderInputError
from gateway.netguard import AllowList
from providers.sandbox import Fetch, decode_inline, guarded_download

__all__ = ["fetch_input"]


async def fetch_input(
    url: object,
    param: str,
    *,
    fetch: Fetch | None,
    max_bytes: int,
    timeout: float,
    allow: AllowList | None = None,
) -> bytes:
    if not isinstance(url, str) or not url:
        raise ProviderInputError(f"'{param}' must be a URL.", param=param)
    too_large = f"'{param}' is larger than {max_bytes} bytes."
    data = await fetch(url) if fetch is not None else None
    if data is None:
        scheme = url.partition(":")[0].lower()
        if scheme == "data":
            data = decode_inline(url, param, max_bytes=max_bytes)
        elif scheme in ("http", "https"):
            data = await guarded_download(
                url, param, allow=allow or AllowList(), max_bytes=max_bytes, timeout=timeout
            )
        else:
            raise ProviderInputError(f"'{param}' must be an http(s) or data: URL.", param=param)
    if len(data) > max_bytes:
        raise ProviderInputError(too_large, param=param)
    return data
