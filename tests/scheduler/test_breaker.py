"""Circuit breakers: open after repeated failures, pause the route, probe, close again."""

from __future__ import annotations

from gateway.scheduler.breaker import BreakerPolicy, Breakers, BreakerState, CircuitBreaker

POLICY = BreakerPolicy(
    failure_threshold=3, failure_ratio=0.5, min_calls=6, window_seconds=10, cooldown_seconds=5
)


def breaker() -> CircuitBreaker:
    return CircuitBreaker("fal:x", POLICY)


def test_consecutive_failures_open_the_breaker() -> None:
    b = breaker()
    for t in range(2):
        b.record(ok=False, now=t)
    assert b.state is BreakerState.CLOSED and b.allow(now=2)
    b.record(ok=False, now=3)
    assert b.state is BreakerState.OPEN
    assert not b.allow(now=4)


def test_a_success_resets_the_consecutive_count() -> None:
    b = breaker()
    for t, ok in enumerate([False, False, True, False, False]):
        b.record(ok=ok, now=t)
    assert b.state is BreakerState.CLOSED


def test_failure_ratio_within_the_window_opens_the_breaker() -> None:
    b = breaker()
    for t, ok in enumerate([True, False, True, False, True, False]):
        b.record(ok=ok, now=t)
    assert b.state is BreakerState.OPEN  # 3 of 6 failed, never 3 in a row


def test_old_calls_leave_the_window() -> None:
    b = breaker()
    for t, ok in enumerate([False, True, False, True, False]):
        b.record(ok=ok, now=t)
    b.record(ok=True, now=100)  # the earlier failures are out of the 10 s window
    assert b.state is BreakerState.CLOSED


def test_after_the_cooldown_one_probe_goes_through() -> None:
    b = breaker()
    for t in range(3):
        b.record(ok=False, now=t)
    assert b.retry_at() == 2 + 5
    assert not b.allow(now=6.9)
    assert b.allow(now=7.1)
    assert b.state is BreakerState.HALF_OPEN
    assert not b.allow(now=7.2)  # only one probe at a time


def test_a_successful_probe_closes_the_breaker() -> None:
    b = breaker()
    for t in range(3):
        b.record(ok=False, now=t)
    assert b.allow(now=8)
    b.record(ok=True, now=9)
    assert b.state is BreakerState.CLOSED
    assert b.allow(now=9) and b.allow(now=9)


def test_a_failed_probe_opens_the_breaker_for_another_cooldown() -> None:
    b = breaker()
    for t in range(3):
        b.record(ok=False, now=t)
    assert b.allow(now=8)
    b.record(ok=False, now=9)
    assert b.state is BreakerState.OPEN
    assert not b.allow(now=13)
    assert b.allow(now=14.5)


def test_a_probe_without_verdict_frees_the_probe_slot() -> None:
    b = breaker()
    for t in range(3):
        b.record(ok=False, now=t)
    assert b.allow(now=8)
    b.release_probe()
    assert b.allow(now=8.1)


def test_breakers_are_per_route() -> None:
    breakers = Breakers(POLICY)
    for t in range(3):
        breakers.get("fal:a").record(ok=False, now=t)
    assert breakers.state("fal:a") is BreakerState.OPEN
    assert breakers.state("fal:b") is BreakerState.CLOSED
    assert breakers.get("fal:b").allow()


# -- how many are kept --------------------------------------------------------------------------


def name_many_apps(breakers: Breakers, count: int, now: float) -> None:
    """What a Tasks API client can do: name fal app after fal app, each run once and fine."""
    for i in range(count):
        breaker = breakers.get(f"fal:fal-ai/app-{i}", now=now)
        assert breaker.allow(now=now)
        breaker.record(ok=True, now=now)


def test_naming_many_routes_keeps_at_most_the_cap_of_breakers() -> None:
    breakers = Breakers(POLICY, max_breakers=16)

    name_many_apps(breakers, 5000, now=1.0)

    assert breakers.count == 16
    assert breakers.state("fal:fal-ai/app-4999") is BreakerState.CLOSED


def test_open_and_half_open_breakers_survive_eviction_pressure() -> None:
    breakers = Breakers(POLICY, max_breakers=16)
    for t in range(3):
        breakers.get("fal:probing").record(ok=False, now=t)  # open from 2 s to 7 s
        breakers.get("fal:open").record(ok=False, now=6 + t)  # open from 8 s to 13 s
    assert breakers.get("fal:probing").allow(now=8)  # after its cooldown: its probe is out

    name_many_apps(breakers, 5000, now=9.0)

    assert breakers.count == 16
    assert breakers.state("fal:open") is BreakerState.OPEN
    assert not breakers.get("fal:open").allow(now=9)  # still paused: no early retry
    assert breakers.state("fal:probing") is BreakerState.HALF_OPEN
    assert not breakers.get("fal:probing").allow(now=9)  # still one probe at a time


def test_a_recent_failure_is_kept_until_it_leaves_the_window() -> None:
    breakers = Breakers(POLICY, max_breakers=16)
    for t in range(2):  # one failure short of opening
        breakers.get("fal:flaky").record(ok=False, now=t)

    name_many_apps(breakers, 100, now=5.0)
    breakers.get("fal:flaky").record(ok=False, now=6)

    assert breakers.state("fal:flaky") is BreakerState.OPEN  # the third failure in a row

    breakers.get("fal:old").record(ok=False, now=0)
    name_many_apps(breakers, 100, now=11.0)  # past the 10 s window: nothing left to keep
    assert breakers.get("fal:old", now=11).consecutive_failures == 0  # a fresh breaker
