"""Retry policy as a value object: given an error and the attempt number, how long to wait."""

from __future__ import annotations

import random
from dataclasses import dataclass

from gateway.errors import (
    ProviderError,
    ProviderInputError,
    ProviderLostRequest,
    ProviderResourceExhausted,
    ProviderTransientError,
)


@dataclass(frozen=True)
class RetryPolicy:
    """Exponential backoff with full jitter, bounded attempts, Retry-After honoured.

    ``decide`` returns the delay before retrying the same route, or None when the job should
    stop retrying it (input errors stop the job; other errors move to the next route). The
    gateway's own resource shortages (``ProviderResourceExhausted``) are retried past
    ``max_attempts``: the caller's deadline bounds them, so an accepted job is not failed
    because its host was busy for a while.
    """

    max_attempts: int = 3
    base: float = 0.5
    cap: float = 30.0

    def decide(
        self, error: ProviderError, attempt: int, rng: random.Random | None = None
    ) -> float | None:
        if isinstance(error, ProviderInputError):
            return None
        if not isinstance(error, ProviderTransientError | ProviderLostRequest):
            return None
        if attempt >= self.max_attempts and not isinstance(error, ProviderResourceExhausted):
            return None
        if isinstance(error, ProviderLostRequest):
            return 0.0
        ceiling = min(self.cap, self.base * (2 ** min(attempt - 1, 60)))  # no float overflow
        delay = (rng or random).uniform(0, ceiling)
        if error.retry_after is not None:
            delay = max(delay, min(error.retry_after, self.cap))
        return delay
