"""The per-key token bucket on job creation (gateway/ratelimit.py), on a fake clock."""

from __future__ import annotations

import pytest

from gateway.errors import RateLimited
from gateway.ratelimit import MAX_KEYS, RateLimiter


def takes(limiter: RateLimiter, key: str, now: float, count: int) -> int:
    """How many of ``count`` takes at ``now`` succeed."""
    ok = 0
    for _ in range(count):
        try:
            limiter.take(key, now=now)
        except RateLimited:
            continue
        ok += 1
    return ok


def refused(limiter: RateLimiter, key: str, now: float | None) -> RateLimited:
    with pytest.raises(RateLimited) as info:
        limiter.take(key, now=now)
    return info.value


def test_a_full_bucket_allows_a_burst_then_refuses() -> None:
    limiter = RateLimiter(rate=2.0, burst=5)
    assert takes(limiter, "k", 100.0, 5) == 5
    error = refused(limiter, "k", 100.0)
    assert error.status_code == 429
    assert error.error_type == "rate_limit_error"
    assert error.code == "rate_limit_exceeded"
    assert "Retry-After" in error.headers()


def test_tokens_refill_at_the_rate() -> None:
    limiter = RateLimiter(rate=2.0, burst=5)
    assert takes(limiter, "k", 0.0, 5) == 5
    refused(limiter, "k", 0.0)
    refused(limiter, "k", 0.4)  # 0.8 of a token
    limiter.take("k", now=0.5)  # one token after 0.5 s at 2/s
    refused(limiter, "k", 0.5)
    assert takes(limiter, "k", 1.5, 10) == 2  # two more in the next second


def test_refill_stops_at_the_burst() -> None:
    limiter = RateLimiter(rate=10.0, burst=3)
    assert takes(limiter, "k", 0.0, 3) == 3
    assert takes(limiter, "k", 3600.0, 10) == 3  # an hour idle still allows only a burst


def test_refused_takes_do_not_spend_tokens() -> None:
    limiter = RateLimiter(rate=1.0, burst=1)
    limiter.take("k", now=0.0)
    for t in (0.1, 0.2, 0.5, 0.9):
        refused(limiter, "k", t)
    limiter.take("k", now=1.0)  # hammering while empty did not push the next token back


@pytest.mark.parametrize(
    ("rate", "burst", "elapsed", "expected"),
    [
        (1.0, 1, 0.0, 1.0),  # a whole token missing at 1/s
        (0.2, 1, 0.0, 5.0),  # one token per 5 s
        (0.2, 1, 4.0, 1.0),  # 0.8 of it already back
        (2.0, 4, 0.0, 0.5),
        (10.0, 1, 0.0, 0.1),
    ],
)
def test_retry_after_is_when_the_next_token_arrives(
    rate: float, burst: int, elapsed: float, expected: float
) -> None:
    limiter = RateLimiter(rate=rate, burst=burst)
    assert takes(limiter, "k", 0.0, burst) == burst
    error = refused(limiter, "k", elapsed)
    assert error.retry_after == pytest.approx(expected)
    header = int(error.headers()["Retry-After"])
    assert header >= 1  # whole seconds, never 0 (that would invite a retry that fails)
    assert header == max(1, -int(-expected // 1))  # rounded up
    limiter.take("k", now=elapsed + error.retry_after + 1e-6)  # and then it is true


def test_keys_have_their_own_buckets() -> None:
    limiter = RateLimiter(rate=1.0, burst=2)
    assert takes(limiter, "a", 0.0, 2) == 2
    refused(limiter, "a", 0.0)
    assert takes(limiter, "b", 0.0, 2) == 2  # a's empty bucket does not touch b
    refused(limiter, "b", 0.0)
    limiter.take("a", now=1.0)
    refused(limiter, "a", 1.0)
    limiter.take("b", now=1.0)


@pytest.mark.parametrize("rate", [0.0, -1.0])
def test_rate_zero_turns_the_limit_off(rate: float) -> None:
    limiter = RateLimiter(rate=rate, burst=1)
    assert takes(limiter, "k", 0.0, 10_000) == 10_000


def test_burst_is_at_least_one() -> None:
    limiter = RateLimiter(rate=1.0, burst=0)
    assert limiter.burst == 1
    limiter.take("k", now=0.0)
    refused(limiter, "k", 0.0)


def test_real_clock_is_used_without_now() -> None:
    limiter = RateLimiter(rate=0.001, burst=2)
    limiter.take("k")
    limiter.take("k")
    error = refused(limiter, "k", now=None)
    assert error.retry_after > 900  # ~1000 s at 0.001/s


def test_the_number_of_remembered_keys_is_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("gateway.ratelimit.MAX_KEYS", 3)
    limiter = RateLimiter(rate=1.0, burst=1)
    for key in ("a", "b", "c", "d"):
        limiter.take(key, now=0.0)
    assert len(limiter._buckets) == 3
    assert MAX_KEYS >= 10_000
    # the forgotten key starts again with a full bucket; a remembered one is still empty
    limiter.take("a", now=0.0)
    refused(limiter, "d", 0.0)
