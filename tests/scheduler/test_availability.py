"""The one route-ready rule (gateway/scheduler/availability.py): a route can run when its
provider is enabled and can run it, and its circuit admits a job."""

from __future__ import annotations

import pytest

from gateway.catalog import parse_catalog
from gateway.errors import ModelUnavailable
from gateway.scheduler.availability import Availability
from gateway.scheduler.breaker import BreakerPolicy, Breakers, BreakerState
from providers.base import Provider
from tests.fakes import FakeProvider

CATALOG = parse_catalog(
    {
        "models": [
            {
                "id": "two",
                "kind": "image",
                "routes": [
                    {"provider": "fake", "target": "image"},
                    {"provider": "fake2", "target": "image"},
                ],
            }
        ]
    },
    ["fake", "fake2"],
    source="test-catalog",
)
MODEL = CATALOG.get("two")
FIRST, SECOND = MODEL.routes
#: one failure opens a circuit, for a minute
POLICY = BreakerPolicy(failure_threshold=1, cooldown_seconds=60.0)


def availability(*fakes: FakeProvider) -> Availability:
    providers: dict[str, Provider] = {f.name: f for f in fakes}
    return Availability(providers, Breakers(POLICY))


def test_a_configured_route_with_a_closed_circuit_is_ready() -> None:
    check = availability(FakeProvider("fake")).check(FIRST)
    assert check.ready and check.configured and check.admitted
    assert check.circuit is BreakerState.CLOSED and check.reason is None


def test_a_route_whose_provider_is_not_enabled_is_not_ready_and_says_so() -> None:
    check = availability(FakeProvider("fake2")).check(FIRST)
    assert not check.ready and not check.configured and check.provider is None
    assert check.reason == "the 'fake' provider is not enabled"


def test_a_route_the_provider_cannot_run_carries_the_providers_reason() -> None:
    fake = FakeProvider("fake")
    fake.available = False
    check = availability(fake).check(FIRST)
    assert not check.ready and not check.configured and check.provider is fake
    assert check.reason == "the fake is switched off"


def test_an_open_circuit_makes_a_configured_route_not_ready() -> None:
    avail = availability(FakeProvider("fake"))
    avail.breakers.get(FIRST.name).record(ok=False, now=100.0)
    check = avail.check(FIRST)
    assert check.configured and not check.admitted and not check.ready
    assert check.circuit is BreakerState.OPEN and check.reopens_at == 160.0


def test_looking_at_a_route_makes_no_breaker_and_takes_no_probe() -> None:
    avail = availability(FakeProvider("fake"))
    for _ in range(3):
        assert avail.check(FIRST).ready
    assert avail.breakers.count == 0


def test_claiming_a_cooled_down_route_takes_its_one_probe() -> None:
    avail = availability(FakeProvider("fake"))
    avail.breakers.get(FIRST.name).record(ok=False, now=-1000.0)  # cooled down long ago

    first = avail.check(FIRST, claim=True)
    second = avail.check(FIRST, claim=True)

    assert first.ready and first.circuit is BreakerState.HALF_OPEN
    assert not second.ready and not second.admitted  # the probe is out


def test_claiming_a_route_not_configured_leaves_its_circuit_alone() -> None:
    avail = availability(FakeProvider("fake2"))
    assert not avail.check(FIRST, claim=True).ready
    assert avail.breakers.count == 0


@pytest.mark.parametrize("block", ["not_enabled", "unavailable", "circuit_open"])
def test_the_catalog_view_reports_what_the_check_says(block: str) -> None:
    fake, fake2 = FakeProvider("fake"), FakeProvider("fake2")
    avail = availability(fake2) if block == "not_enabled" else availability(fake, fake2)
    if block == "unavailable":
        fake.available = False
    if block == "circuit_open":
        avail.breakers.get(FIRST.name).record(ok=False)

    first, second = avail.routes(MODEL)

    assert first["available"] is avail.check(FIRST).ready is False
    assert second["available"] is avail.check(SECOND).ready is True
    assert (first["role"], second["role"]) == ("primary", "fallback")
    expected = {
        "not_enabled": "the 'fake' provider is not enabled",
        "unavailable": "the fake is switched off",
        "circuit_open": "paused after repeated failures (circuit open)",
    }[block]
    assert first["reason"] == expected
    assert first["circuit"] == ("open" if block == "circuit_open" else "closed")


def test_submits_wait_for_a_route_paused_by_its_circuit() -> None:
    avail = availability(FakeProvider("fake"))
    avail.breakers.get(FIRST.name).record(ok=False)
    avail.require_configured(MODEL)  # no error: the circuit reopens, the job waits


def test_submits_are_refused_when_no_route_is_configured() -> None:
    fake = FakeProvider("fake")
    fake.available = False
    with pytest.raises(ModelUnavailable) as refused:
        availability(fake).require_configured(MODEL)
    assert refused.value.message == (
        "The model 'two' cannot run on this gateway now: fake:image: the fake is switched "
        "off; fake2:image: the 'fake2' provider is not enabled."
    )
