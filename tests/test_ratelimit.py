"""The per-key token buckets on job creation (gateway/ratelimit.py), on a fake clock.

``LocalRateLimiter`` is the in-process bucket (SQLite); ``SharedRateLimiter`` asks the store
(PostgreSQL: tests/store/test_rate_buckets.py runs the real statement) and remembers, per key,
until when the shared bucket is certainly empty.
"""

from __future__ import annotations

import pytest

from gateway.errors import RateLimited
from gateway.ratelimit import (
    MAX_KEYS,
    KeyLimits,
    Limits,
    LocalRateLimiter,
    SharedRateLimiter,
    rate_limiter_for,
)
from gateway.store.sqlite import SQLiteJobStore


def takes(
    limiter: LocalRateLimiter, key: str, now: float, count: int, rate: float = 2.0, burst: int = 5
) -> int:
    """How many of ``count`` takes at ``now`` succeed."""
    ok = 0
    for _ in range(count):
        try:
            limiter.take_at(key, rate, burst, now)
        except RateLimited:
            continue
        ok += 1
    return ok


def refused(
    limiter: LocalRateLimiter, key: str, now: float, rate: float = 2.0, burst: int = 5
) -> RateLimited:
    with pytest.raises(RateLimited) as info:
        limiter.take_at(key, rate, burst, now)
    return info.value


def test_a_full_bucket_allows_a_burst_then_refuses() -> None:
    limiter = LocalRateLimiter()
    assert takes(limiter, "k", 100.0, 5) == 5
    error = refused(limiter, "k", 100.0)
    assert error.status_code == 429
    assert error.error_type == "rate_limit_error"
    assert error.code == "rate_limit_exceeded"
    assert "Retry-After" in error.headers()


def test_tokens_refill_at_the_rate() -> None:
    limiter = LocalRateLimiter()
    assert takes(limiter, "k", 0.0, 5) == 5
    refused(limiter, "k", 0.0)
    refused(limiter, "k", 0.4)  # 0.8 of a token
    limiter.take_at("k", 2.0, 5, 0.5)  # one token after 0.5 s at 2/s
    refused(limiter, "k", 0.5)
    assert takes(limiter, "k", 1.5, 10) == 2  # two more in the next second


def test_refill_stops_at_the_burst() -> None:
    limiter = LocalRateLimiter()
    assert takes(limiter, "k", 0.0, 3, rate=10.0, burst=3) == 3
    assert takes(limiter, "k", 3600.0, 10, rate=10.0, burst=3) == 3  # idle: still one burst


def test_refused_takes_do_not_spend_tokens() -> None:
    limiter = LocalRateLimiter()
    limiter.take_at("k", 1.0, 1, 0.0)
    for t in (0.1, 0.2, 0.5, 0.9):
        refused(limiter, "k", t, rate=1.0, burst=1)
    limiter.take_at("k", 1.0, 1, 1.0)  # hammering while empty did not push the next token back


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
    limiter = LocalRateLimiter()
    assert takes(limiter, "k", 0.0, burst, rate, burst) == burst
    error = refused(limiter, "k", elapsed, rate, burst)
    assert error.retry_after == pytest.approx(expected)
    header = int(error.headers()["Retry-After"])
    assert header >= 1  # whole seconds, never 0 (that would invite a retry that fails)
    assert header == max(1, -int(-expected // 1))  # rounded up
    limiter.take_at("k", rate, burst, elapsed + error.retry_after + 1e-6)  # and then it is true


def test_keys_have_their_own_buckets() -> None:
    limiter = LocalRateLimiter()
    assert takes(limiter, "a", 0.0, 2, 1.0, 2) == 2
    refused(limiter, "a", 0.0, 1.0, 2)
    assert takes(limiter, "b", 0.0, 2, 1.0, 2) == 2  # a's empty bucket does not touch b
    refused(limiter, "b", 0.0, 1.0, 2)
    limiter.take_at("a", 1.0, 2, 1.0)
    refused(limiter, "a", 1.0, 1.0, 2)
    limiter.take_at("b", 1.0, 2, 1.0)


def test_each_key_gets_the_rate_and_burst_it_is_given() -> None:
    limiter = LocalRateLimiter()
    assert takes(limiter, "tight", 0.0, 10, rate=1.0, burst=2) == 2
    assert takes(limiter, "roomy", 0.0, 10, rate=1.0, burst=8) == 8


def test_a_smaller_burst_applies_to_a_bucket_at_once() -> None:
    limiter = LocalRateLimiter()
    assert takes(limiter, "k", 0.0, 1, rate=1.0, burst=10) == 1  # 9 left
    assert takes(limiter, "k", 0.0, 10, rate=1.0, burst=3) == 3  # capped at the new burst


@pytest.mark.parametrize("rate", [0.0, -1.0])
def test_rate_zero_turns_the_limit_off(rate: float) -> None:
    limiter = LocalRateLimiter()
    assert takes(limiter, "k", 0.0, 10_000, rate=rate, burst=1) == 10_000


def test_burst_is_at_least_one() -> None:
    limiter = LocalRateLimiter()
    limiter.take_at("k", 1.0, 0, 0.0)
    refused(limiter, "k", 0.0, 1.0, 0)


async def test_take_uses_the_real_clock() -> None:
    limiter = LocalRateLimiter()
    await limiter.take("k", 0.001, 2)
    await limiter.take("k", 0.001, 2)
    with pytest.raises(RateLimited) as info:
        await limiter.take("k", 0.001, 2)
    assert info.value.retry_after > 900  # ~1000 s at 0.001/s


def test_the_number_of_remembered_keys_is_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("gateway.ratelimit.MAX_KEYS", 3)
    limiter = LocalRateLimiter()
    for key in ("a", "b", "c", "d"):
        limiter.take_at(key, 1.0, 1, 0.0)
    assert len(limiter._buckets) == 3
    assert MAX_KEYS >= 10_000
    # the forgotten key starts again with a full bucket; a remembered one is still empty
    limiter.take_at("a", 1.0, 1, 0.0)
    refused(limiter, "d", 0.0, 1.0, 1)


# -- limits: defaults and a key's own -------------------------------------------------------


def test_a_keys_own_limits_override_the_defaults_one_by_one() -> None:
    defaults = Limits(rate=5.0, burst=20, max_active=10)
    assert defaults.apply(None) == defaults
    assert defaults.apply(KeyLimits()) == defaults
    own = KeyLimits(rate_limit=0.5, rate_burst=None, max_active_jobs=0)
    assert defaults.apply(own) == Limits(rate=0.5, burst=20, max_active=0)


# -- the shared limiter ---------------------------------------------------------------------


class FakeBuckets:
    """A store's ``take_rate_token``: answers from a script, counts the calls."""

    shares_rate_limits = True

    def __init__(self, waits: list[float]) -> None:
        self.waits = waits
        self.calls: list[tuple[str, float, int]] = []

    async def take_rate_token(self, bucket: str, rate: float, burst: int) -> float:
        self.calls.append((bucket, rate, burst))
        return self.waits.pop(0)


async def test_the_shared_limiter_asks_the_store_once_per_take() -> None:
    store = FakeBuckets([0.0, 0.0])
    limiter = SharedRateLimiter(store)  # type: ignore[arg-type]
    await limiter.take("k", 2.0, 5)
    await limiter.take("k", 2.0, 5)
    assert store.calls == [("k", 2.0, 5), ("k", 2.0, 5)]


async def test_the_shared_limiter_refuses_what_the_store_refuses_with_its_wait() -> None:
    store = FakeBuckets([30.0])
    limiter = SharedRateLimiter(store)  # type: ignore[arg-type]
    with pytest.raises(RateLimited) as info:
        await limiter.take("k", 0.1, 1)
    assert info.value.retry_after == pytest.approx(30.0)
    assert info.value.code == "rate_limit_exceeded"


async def test_a_bucket_known_to_be_empty_is_refused_without_asking_the_store() -> None:
    store = FakeBuckets([30.0, 0.0])
    limiter = SharedRateLimiter(store)  # type: ignore[arg-type]
    with pytest.raises(RateLimited):
        await limiter.take("k", 0.1, 1)
    for _ in range(100):
        with pytest.raises(RateLimited) as info:
            await limiter.take("k", 0.1, 1)
        assert 29 < info.value.retry_after <= 30
    assert len(store.calls) == 1  # the flood cost the database nothing
    await limiter.take("other", 0.1, 1)  # other keys still ask
    assert len(store.calls) == 2


async def test_the_empty_bucket_shortcut_ends_when_the_token_is_due(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    clock = [1000.0]
    monkeypatch.setattr("gateway.ratelimit.time.monotonic", lambda: clock[0])
    store = FakeBuckets([2.0, 0.0])
    limiter = SharedRateLimiter(store)  # type: ignore[arg-type]
    with pytest.raises(RateLimited):
        await limiter.take("k", 0.5, 1)
    clock[0] += 1.99
    with pytest.raises(RateLimited):
        await limiter.take("k", 0.5, 1)
    assert len(store.calls) == 1
    clock[0] += 0.01  # the token is due: the store decides again
    await limiter.take("k", 0.5, 1)
    assert len(store.calls) == 2


async def test_new_limits_for_a_key_ask_the_store_again() -> None:
    store = FakeBuckets([30.0, 0.0])
    limiter = SharedRateLimiter(store)  # type: ignore[arg-type]
    with pytest.raises(RateLimited):
        await limiter.take("k", 0.1, 1)
    await limiter.take("k", 10.0, 50)  # an admin raised the key's limits meanwhile
    assert store.calls[-1] == ("k", 10.0, 50)


async def test_the_shared_limiter_never_asks_when_the_rate_is_zero() -> None:
    store = FakeBuckets([])
    limiter = SharedRateLimiter(store)  # type: ignore[arg-type]
    await limiter.take("k", 0.0, 1)
    assert store.calls == []


def test_sqlite_keeps_buckets_in_the_process() -> None:
    assert isinstance(rate_limiter_for(SQLiteJobStore(":memory:")), LocalRateLimiter)
    assert isinstance(rate_limiter_for(FakeBuckets([])), SharedRateLimiter)  # type: ignore[arg-type]
