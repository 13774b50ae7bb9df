from __future__ import annotations

import asyncio

import pytest

from gateway.errors import ProviderUnavailable, ServiceUnavailable, WebhookRejected
from providers.webhook_auth import RefreshingKeys, check_timestamp


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class Source:
    """Keys "v1", "v2", ... one per load; ``down`` makes loads fail."""

    def __init__(self) -> None:
        self.loads = 0
        self.down = False

    async def __call__(self) -> str:
        self.loads += 1
        await asyncio.sleep(0)
        if self.down:
            raise ProviderUnavailable("the key server is down")
        return f"v{self.loads}"


def keys(source: Source, clock: Clock) -> RefreshingKeys[str]:
    return RefreshingKeys(source, what="test keys", ttl=3600, floor=60, clock=clock)


async def test_keys_are_kept_for_their_ttl_then_fetched_again() -> None:
    source, clock = Source(), Clock()
    kept = keys(source, clock)
    assert [await kept.get(), await kept.get()] == ["v1", "v1"]
    clock.now += 3600
    assert await kept.get() == "v2"


async def test_a_reload_within_the_floor_fetches_nothing() -> None:
    source, clock = Source(), Clock()
    kept = keys(source, clock)
    await kept.get()
    assert await kept.reload() is None
    clock.now += 60
    assert await kept.reload() == "v2"
    assert source.loads == 2


async def test_concurrent_callers_share_one_fetch() -> None:
    source, clock = Source(), Clock()
    kept = keys(source, clock)
    assert await asyncio.gather(*(kept.get() for _ in range(10))) == ["v1"] * 10
    assert source.loads == 1


async def test_keys_that_cannot_be_fetched_are_unavailable_and_retried_after_the_floor() -> None:
    source, clock = Source(), Clock()
    source.down = True
    kept = keys(source, clock)
    with pytest.raises(ServiceUnavailable):
        await kept.get()
    with pytest.raises(ServiceUnavailable) as raised:
        await kept.get()  # within the floor: not tried again
    assert source.loads == 1 and 1 <= raised.value.retry_after <= 60
    source.down = False
    clock.now += 60
    assert await kept.get() == "v2"


async def test_expired_keys_serve_while_the_source_is_down_but_a_reload_is_unavailable() -> None:
    source, clock = Source(), Clock()
    kept = keys(source, clock)
    await kept.get()
    source.down = True
    clock.now += 3600
    assert await kept.get() == "v1"
    clock.now += 60
    with pytest.raises(ServiceUnavailable):
        await kept.reload()


@pytest.mark.parametrize("offset", [-301, 301])
def test_a_timestamp_more_than_the_tolerance_off_is_rejected(offset: int) -> None:
    assert check_timestamp("1000", "ts", tolerance=300, now=1300) == 1000
    with pytest.raises(WebhookRejected, match="replay"):
        check_timestamp(str(1000 + offset), "ts", tolerance=300, now=1000)


@pytest.mark.parametrize("value", [None, "", "soon", "1e9"])
def test_a_missing_or_unreadable_timestamp_is_rejected(value: str | None) -> None:
    with pytest.raises(WebhookRejected):
        check_timestamp(value, "ts", tolerance=300, now=1000)
