"""Retry policy as a value object: given an error and the attempt number, how long to wait.

The timing is tenacity's, the stack's retry library, without its in-process loop: the
runner persists every attempt and sleeps itself, so a retry outlives a restart of the
gateway. ``RetryPolicy.decide`` builds the ``tenacity.RetryCallState`` that a ``Retrying``
loop would hold after attempt ``n`` failed with ``error``, and asks the policy's tenacity
strategies what that loop would do next: retry or not (``retry``), give up (``stop``), and
after how long (``wait``).
"""

from __future__ import annotations

import random
from dataclasses import dataclass

import tenacity
from tenacity.stop import stop_base
from tenacity.wait import wait_base

from gateway.errors import (
    ProviderError,
    ProviderLostRequest,
    ProviderResourceExhausted,
    ProviderTransientError,
)

#: the errors retried on the same route: a transient fault, and a request the provider lost
#: (resubmitted at once). An input error never is (a retry cannot fix a bad prompt), nor a
#: route that is unavailable (the runner moves to the next route).
RETRIED = tenacity.retry_if_exception_type((ProviderTransientError, ProviderLostRequest))


class stop_unless_exception_type(stop_base):
    """Stop as ``stop`` says, except after an error of ``exception_types``: never."""

    def __init__(
        self,
        stop: stop_base,
        exception_types: type[BaseException] | tuple[type[BaseException], ...],
    ) -> None:
        self.stop = stop
        self.exception_types = exception_types

    def __call__(self, retry_state: tenacity.RetryCallState) -> bool:
        return not isinstance(_error(retry_state), self.exception_types) and self.stop(retry_state)


class wait_seeded_full_jitter(tenacity.wait_exponential):
    """tenacity's ``wait_random_exponential`` ("full jitter": uniform in an exponentially
    growing window), drawing from a given ``random.Random``, so a seeded policy repeats."""

    def __init__(self, multiplier: float, max: float, rng: random.Random) -> None:
        super().__init__(multiplier=multiplier, max=max)
        self.rng = rng

    def __call__(self, retry_state: tenacity.RetryCallState) -> float:
        return self.rng.uniform(self.min, super().__call__(retry_state))


class wait_at_least_retry_after(wait_base):
    """``wait``, but never less than the error's ``retry_after`` (itself at most ``cap``)."""

    def __init__(self, wait: wait_base, cap: float) -> None:
        self.wait = wait
        self.cap = cap

    def __call__(self, retry_state: tenacity.RetryCallState) -> float:
        delay = self.wait(retry_state)
        error = _error(retry_state)
        if not isinstance(error, ProviderError) or error.retry_after is None:
            return delay
        return max(delay, min(error.retry_after, self.cap))


def _error(retry_state: tenacity.RetryCallState) -> BaseException | None:
    return None if retry_state.outcome is None else retry_state.outcome.exception()


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
        """After attempt number ``attempt`` (1 for the first) failed with ``error``: the
        delay before the next attempt on the same route, or None for no retry there."""
        retrying = self.retrying(rng)
        state = tenacity.RetryCallState(retrying, None, (), {})
        state.attempt_number = attempt
        state.set_exception((type(error), error, error.__traceback__))
        if not retrying.retry(state) or retrying.stop(state):
            return None
        if isinstance(error, ProviderLostRequest):
            return 0.0  # the provider forgot the request: send it again at once
        return float(retrying.wait(state))

    def retrying(self, rng: random.Random | None = None) -> tenacity.Retrying:
        """The policy as tenacity strategies (``rng``: a seeded source for the jitter)."""
        if self.base <= 0:  # no window to draw from (and nothing for tenacity to grow)
            jitter: wait_base = tenacity.wait_none()
        elif rng is None:
            jitter = tenacity.wait_random_exponential(multiplier=self.base, max=self.cap)
        else:
            jitter = wait_seeded_full_jitter(self.base, self.cap, rng)
        return tenacity.Retrying(
            retry=RETRIED,
            stop=stop_unless_exception_type(
                tenacity.stop_after_attempt(self.max_attempts), ProviderResourceExhausted
            ),
            wait=wait_at_least_retry_after(jitter, self.cap),
        )
