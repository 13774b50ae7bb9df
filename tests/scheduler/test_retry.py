"""RetryPolicy.decide: which errors are retried on the same route, and after how long."""

from __future__ import annotations

import random

import pytest

from gateway.errors import (
    ProviderError,
    ProviderInputError,
    ProviderLostRequest,
    ProviderResourceExhausted,
    ProviderTransientError,
    ProviderUnavailable,
)
from gateway.scheduler.retry import RetryPolicy

POLICY = RetryPolicy(max_attempts=5, base=0.5, cap=30.0)


@pytest.mark.parametrize("attempt", [1, 2, 4])
def test_input_error_is_never_retried(attempt: int) -> None:
    assert POLICY.decide(ProviderInputError("bad prompt"), attempt, random.Random(1)) is None


@pytest.mark.parametrize("attempt", [1, 2])
def test_unavailable_is_not_retried_on_the_same_route(attempt: int) -> None:
    assert POLICY.decide(ProviderUnavailable("no credit"), attempt, random.Random(1)) is None


def test_plain_provider_error_is_not_retried() -> None:
    assert POLICY.decide(ProviderError("odd"), 1, random.Random(1)) is None


@pytest.mark.parametrize("attempt", [1, 2, 3, 4])
def test_transient_error_backs_off_within_full_jitter_window(attempt: int) -> None:
    rng = random.Random(1234)
    ceiling = 0.5 * 2 ** (attempt - 1)
    delays = [POLICY.decide(ProviderTransientError(), attempt, rng) for _ in range(300)]
    assert all(d is not None and 0 <= d <= ceiling for d in delays)
    assert max(d for d in delays if d is not None) > 0.8 * ceiling, "the window is not used"
    assert min(d for d in delays if d is not None) < 0.2 * ceiling, "no jitter below"


def test_backoff_grows_with_the_attempt_number() -> None:
    rng = random.Random(7)
    first = [POLICY.decide(ProviderTransientError(), 1, rng) or 0.0 for _ in range(300)]
    fourth = [POLICY.decide(ProviderTransientError(), 4, rng) or 0.0 for _ in range(300)]
    assert sum(fourth) / 300 > 4 * sum(first) / 300


def test_same_seed_gives_same_delay() -> None:
    a = POLICY.decide(ProviderTransientError(), 2, random.Random(99))
    b = POLICY.decide(ProviderTransientError(), 2, random.Random(99))
    assert a == b


def test_backoff_is_capped() -> None:
    policy = RetryPolicy(max_attempts=50, base=1.0, cap=5.0)
    rng = random.Random(3)
    delays = [policy.decide(ProviderTransientError(), 30, rng) for _ in range(200)]
    assert all(d is not None and 0 <= d <= 5.0 for d in delays)
    assert max(d for d in delays if d is not None) > 4.0


@pytest.mark.parametrize("seed", range(20))
def test_retry_after_is_honoured(seed: int) -> None:
    policy = RetryPolicy(max_attempts=5, base=0.01, cap=30.0)
    delay = policy.decide(ProviderTransientError(retry_after=2.5), 1, random.Random(seed))
    assert delay is not None
    assert delay >= 2.5


def test_retry_after_beyond_the_cap_is_capped() -> None:
    policy = RetryPolicy(max_attempts=5, base=0.01, cap=3.0)
    delay = policy.decide(ProviderTransientError(retry_after=600), 1, random.Random(1))
    assert delay is not None
    assert 0 <= delay <= 3.0


def test_transient_error_is_retried_until_attempts_are_exhausted() -> None:
    policy = RetryPolicy(max_attempts=3, base=0.5, cap=30.0)
    rng = random.Random(5)
    assert policy.decide(ProviderTransientError(), 1, rng) is not None
    assert policy.decide(ProviderTransientError(), 2, rng) is not None
    assert policy.decide(ProviderTransientError(), 3, rng) is None
    assert policy.decide(ProviderTransientError(), 4, rng) is None


def test_single_attempt_policy_never_retries() -> None:
    policy = RetryPolicy(max_attempts=1)
    assert policy.decide(ProviderTransientError(), 1, random.Random(1)) is None


def test_lost_request_is_resubmitted_at_once() -> None:
    assert POLICY.decide(ProviderLostRequest(), 1, random.Random(1)) == 0
    assert POLICY.decide(ProviderLostRequest(), 2, random.Random(1)) == 0


def test_lost_request_respects_the_attempt_budget() -> None:
    assert POLICY.decide(ProviderLostRequest(), POLICY.max_attempts, random.Random(1)) is None


@pytest.mark.parametrize("attempt", [5, 6, 50, 5000])
def test_the_gateways_own_resource_shortage_is_retried_past_max_attempts(attempt: int) -> None:
    delay = POLICY.decide(ProviderResourceExhausted("EMFILE"), attempt, random.Random(1))
    assert delay is not None and 0 <= delay <= POLICY.cap


@pytest.mark.parametrize("attempt", [1, 3])
def test_unseeded_backoff_stays_within_the_full_jitter_window(attempt: int) -> None:
    ceiling = 0.5 * 2 ** (attempt - 1)
    delays = [POLICY.decide(ProviderTransientError(), attempt) for _ in range(300)]
    assert all(d is not None and 0 <= d <= ceiling for d in delays)
    assert len(set(delays)) > 250, "no jitter"


@pytest.mark.parametrize(
    "error", [ProviderTransientError("503"), ProviderTransientError(retry_after=0.2)]
)
def test_tenacitys_own_loop_with_the_policy_waits_as_decide_says(error: ProviderError) -> None:
    """``decide`` answers for one persisted attempt what tenacity's in-process loop, run
    with the same strategies, does: the same waits, and the same number of tries."""
    policy = RetryPolicy(max_attempts=4, base=0.1, cap=1.0)
    slept: list[float] = []
    calls = 0

    def always_fails() -> None:
        nonlocal calls
        calls += 1
        raise error

    loop = policy.retrying(random.Random(8)).copy(sleep=slept.append, reraise=True)
    with pytest.raises(type(error)):
        loop(always_fails)

    rng = random.Random(8)
    decided = [policy.decide(error, n, rng) for n in range(1, policy.max_attempts + 1)]
    assert calls == policy.max_attempts
    assert [*slept, None] == decided
