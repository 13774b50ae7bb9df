"""A provider's output as a stream of chunks: its bytes, a ``data:`` URL, or a download.

``OutputSource.open(output)`` yields the output's media type and its bytes in chunks, each
kind bounded by ``max_bytes``. A download goes through the SSRF guard (``gateway.fetch``)
and is read as the store writes it: a video is never held whole. Failures become provider
errors: a refused or oversized output is ``ProviderUnavailable`` (try the next route), a
network failure ``ProviderTransientError`` (retry).
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING

from gateway.errors import (
    InvalidRequest,
    PayloadTooLarge,
    ProviderTransientError,
    ProviderUnavailable,
    UnresolvableHost,
)
from gateway.fetch import FetchFailed, FetchLimits, GuardedFetcher
from gateway.inline_media import decode_data_url, is_data_url
from gateway.netguard import AllowList

if TYPE_CHECKING:
    from providers.base import Output

__all__ = ["OutputSource"]


async def _one(data: bytes) -> AsyncIterator[bytes]:
    yield data


class OutputSource:
    """Opens provider outputs, within ``max_bytes`` each and ``download_timeout`` per
    download (the writing of the stream included)."""

    def __init__(
        self,
        *,
        max_bytes: int,
        download_timeout: float = 60.0,
        allow: AllowList | None = None,
        fetcher: GuardedFetcher | None = None,
    ) -> None:
        self.max_bytes = max_bytes
        self.download_timeout = download_timeout
        #: non-public hosts and networks outputs may be fetched from (BACKSERV_FETCH_ALLOW)
        self.allow = allow or AllowList()
        #: the long-lived download client (None: one made per download)
        self.fetcher = fetcher

    @contextlib.asynccontextmanager
    async def open(self, output: Output) -> AsyncIterator[tuple[str, AsyncIterator[bytes]]]:
        if output.data is not None:
            self._check_size(len(output.data))
            yield output.content_type, _one(output.data)
        elif output.url is None:
            raise ProviderUnavailable("the provider returned an output with no data or URL")
        elif is_data_url(output.url):
            data, content_type = self.decode_inline(output.url, output.content_type)
            yield content_type, _one(data)
        else:
            async with self._download(output.url, output.content_type) as opened:
                yield opened

    def _check_size(self, size: int) -> None:
        if size > self.max_bytes:
            raise ProviderUnavailable(
                f"the provider's output is {size} bytes; the limit is {self.max_bytes}"
            )

    @contextlib.asynccontextmanager
    async def _download(
        self, url: str, expected_type: str
    ) -> AsyncIterator[tuple[str, AsyncIterator[bytes]]]:
        """A provider's output, streamed through the SSRF guard (``gateway.fetch``)."""
        fetcher = self.fetcher or GuardedFetcher()
        limits = FetchLimits(self.max_bytes, ("image/", "video/"), expected_type, "output_url", 3)
        try:
            async with fetcher.stream(
                url, allow=self.allow, timeout=self.download_timeout, limits=limits
            ) as body:
                yield body.content_type, body.chunks
        except UnresolvableHost as exc:
            raise ProviderTransientError(
                f"downloading the provider's output failed: {exc.message}"
            ) from None
        except InvalidRequest as exc:  # not a URL, or a non-public address: not a CDN
            raise ProviderUnavailable(
                f"the provider's output URL is refused: {exc.message}"
            ) from None
        except FetchFailed as exc:
            if exc.reason == "content_type":
                raise ProviderUnavailable(
                    f"the provider's output is not media: {exc.message}"
                ) from None
            if exc.reason == "too_large":
                raise ProviderUnavailable(
                    f"the provider's output exceeds the {self.max_bytes}-byte limit"
                ) from None
            raise ProviderTransientError(
                f"downloading the provider's output failed: {exc.message}"
            ) from exc
        finally:
            if self.fetcher is None:
                await fetcher.aclose()

    def decode_inline(self, url: str, expected_type: str) -> tuple[bytes, str]:
        """A provider's output sent as a ``data:`` URL, through the one decoder
        (``gateway.inline_media``): bounded, strict, typed by its content."""
        try:
            media = decode_data_url(url, param="output_url", max_bytes=self.max_bytes)
        except PayloadTooLarge:
            raise ProviderUnavailable(
                f"the provider's output exceeds the {self.max_bytes}-byte limit"
            ) from None
        except InvalidRequest as exc:
            raise ProviderUnavailable(f"the provider's output is refused: {exc.message}") from None
        content_type = media.media_type
        if content_type == "application/octet-stream":
            content_type = expected_type
        if not content_type.startswith(("image/", "video/")):
            raise ProviderUnavailable(f"the provider's output is not media: {content_type}")
        return media.data, content_type
