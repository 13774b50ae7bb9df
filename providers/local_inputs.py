"""Input media for the local provider: the bytes behind an ``image_url``.

Tried in order: the injected ``fetch`` (the gateway's own result files), a ``data:`` URL,
then an http(s) download with a size cap and a time limit. Every failure is the client's
input error, naming the parameter.
"""

from __future__ import annotations

import asyncio

import httpx

from gateway.errors import ProviderInputError
from providers.sandbox import Fetch
from providers.sandbox_media import decode_data_url

__all__ = ["fetch_input"]


async def fetch_input(
    url: object, param: str, *, fetch: Fetch | None, max_bytes: int, timeout: float
) -> bytes:
    if not isinstance(url, str) or not url:
        raise ProviderInputError(f"'{param}' must be a URL.", param=param)
    too_large = f"'{param}' is larger than {max_bytes} bytes."
    data = await fetch(url) if fetch is not None else None
    if data is None:
        scheme = url.partition(":")[0].lower()
        if scheme == "data":
            try:
                data = decode_data_url(url, max_bytes=max_bytes)
            except ProviderInputError as exc:
                raise ProviderInputError(f"'{param}': {exc.message}", param=param) from None
        elif scheme in ("http", "https"):
            data = await _download(url, param, max_bytes, timeout)
        else:
            raise ProviderInputError(f"'{param}' must be an http(s) or data: URL.", param=param)
    if len(data) > max_bytes:
        raise ProviderInputError(too_large, param=param)
    return data


async def _download(url: str, param: str, max_bytes: int, timeout: float) -> bytes:
    try:
        host = httpx.URL(url).host or "?"
    except httpx.InvalidURL:
        raise ProviderInputError(f"'{param}' is not a valid URL.", param=param) from None
    try:
        async with (
            asyncio.timeout(timeout),
            httpx.AsyncClient(timeout=timeout, follow_redirects=True) as client,
            client.stream("GET", url) as response,
        ):
            if not response.is_success:
                raise ProviderInputError(
                    f"Fetching '{param}' from {host} failed with HTTP {response.status_code}.",
                    param=param,
                )
            body = bytearray()
            async for chunk in response.aiter_bytes():
                body += chunk
                if len(body) > max_bytes:
                    raise ProviderInputError(
                        f"'{param}' is larger than {max_bytes} bytes.", param=param
                    )
            return bytes(body)
    except TimeoutError:
        raise ProviderInputError(
            f"Fetching '{param}' from {host} took more than {timeout:g} s.", param=param
        ) from None
    except httpx.HTTPError as exc:
        raise ProviderInputError(
            f"Could not fetch '{param}' from {host} ({type(exc).__name__}).", param=param
        ) from exc
