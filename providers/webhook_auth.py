"""What verifying any provider's webhook needs: the headers read case-blind, the timestamp
window (a replay is refused), and keys that are fetched once, kept, and fetched again when a
signature fails against them (the vendor rotated its keys).

``RefreshingKeys`` loads its keys on first use and keeps them ``ttl`` seconds; ``reload()``
fetches them again at once, unless the last fetch is less than ``floor`` seconds old (so a
flood of forged deliveries costs one fetch per ``floor``, not one each). Concurrent callers
share one fetch. A fetch that fails is a ``ServiceUnavailable`` (503): the provider delivers
again later; for ``floor`` seconds after a failure, callers get that answer without a fetch.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Generic, TypeVar

from gateway.errors import GatewayError, ServiceUnavailable, WebhookRejected

__all__ = ["DEFAULT_TOLERANCE", "RefreshingKeys", "check_timestamp", "lower_headers"]

#: how far a delivery's timestamp may be from our clock (both ways), in seconds
DEFAULT_TOLERANCE = 300.0

T = TypeVar("T")


def lower_headers(headers: Mapping[str, str]) -> dict[str, str]:
    """The headers with lower-case names (Starlette's are already; a dict may not be)."""
    return {name.lower(): value for name, value in headers.items()}


def check_timestamp(value: str | None, header: str, *, tolerance: float, now: float) -> int:
    """The delivery's unix timestamp, once it is within ``tolerance`` seconds of ``now``."""
    if value is None:
        raise WebhookRejected(f"The webhook delivery has no {header} header.")
    try:
        stamp = int(value.strip())
    except ValueError:
        raise WebhookRejected(f"The webhook delivery's {header} is not a unix time.") from None
    if abs(now - stamp) > tolerance:
        raise WebhookRejected(
            f"The webhook delivery's {header} is more than {tolerance:g} s from the gateway's "
            "clock: a replay, or a clock that is off."
        )
    return stamp


class RefreshingKeys(Generic[T]):
    """Keys from ``load()``, kept ``ttl`` seconds; see the module docstring."""

    def __init__(
        self,
        load: Callable[[], Awaitable[T]],
        *,
        what: str,
        ttl: float = 3600.0,
        floor: float = 60.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._load = load
        self._what = what
        self._ttl = ttl
        self._floor = floor
        self._clock = clock
        self._keys: T | None = None
        self._loaded_at = -math.inf  # the last fetch that worked
        self._tried_at = -math.inf  # the last fetch, whatever came of it
        self._failed = False  # whether that last fetch failed
        self._lock = asyncio.Lock()

    async def get(self) -> T:
        """The keys: the kept ones while fresh, else fetched (the old ones, past their
        ``ttl``, while fetching fails)."""
        if self._keys is not None and self._clock() - self._loaded_at < self._ttl:
            return self._keys
        async with self._lock:
            if self._keys is not None and self._clock() - self._loaded_at < self._ttl:
                return self._keys
            if self._keys is None and self._failed and self._recent():
                raise self._unavailable()
            try:
                return await self._fetch()
            except ServiceUnavailable:
                if self._keys is None:
                    raise
                return self._keys

    async def reload(self) -> T | None:
        """Keys fetched since a signature failed against the kept ones, or None when the
        kept ones are under ``floor`` seconds old (that signature fails).

        Raises ``ServiceUnavailable`` when the keys cannot be fetched now.
        """
        tried = self._tried_at
        async with self._lock:
            if self._tried_at == tried and not self._recent():
                return await self._fetch()
            if self._failed:
                raise self._unavailable()
            return self._keys if self._tried_at != tried else None

    def _recent(self) -> bool:
        return self._clock() - self._tried_at < self._floor

    def _unavailable(self) -> ServiceUnavailable:
        return ServiceUnavailable(
            f"The {self._what} cannot be fetched now; deliver again later.",
            retry_after=max(1.0, self._floor - (self._clock() - self._tried_at)),
        )

    async def _fetch(self) -> T:
        self._tried_at = self._clock()
        try:
            keys = await self._load()
        except GatewayError as exc:
            self._failed = True
            raise ServiceUnavailable(
                f"The {self._what} could not be fetched: {exc.message}",
                retry_after=self._floor,
            ) from exc
        self._keys, self._loaded_at, self._failed = keys, self._clock(), False
        return keys
