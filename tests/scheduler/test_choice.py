"""Cost-aware routing: the order a job tries interchangeable routes in, and the runner's walk
of it (cheapest that can run first, fallback to the next cheapest, resumption)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from gateway.catalog import Catalog, CatalogModel, parse_catalog
from gateway.errors import ProviderTransientError
from gateway.jobs import Attempt, Job, Outcome, Status
from gateway.ratelimit import KeyLimits
from gateway.scheduler.availability import Availability
from gateway.scheduler.breaker import BreakerPolicy, Breakers
from gateway.scheduler.choice import RouteLatencies, rank_routes, walk_order
from gateway.scheduler.retry import RetryPolicy
from gateway.scheduler.runner import JobRunner
from gateway.service import JobRequest, JobService
from gateway.spend import Budgets
from gateway.storage import LocalStorage, OutputSource
from gateway.store.sqlite import SQLiteJobStore
from providers.base import Provider
from tests.fakes import FakeProvider, fails

POLICY = RetryPolicy(max_attempts=2, base=0.001, cap=0.01)
NAMES = ("dear", "cheap", "middle", "free")


def route(provider: str, amount: float | None = None) -> dict[str, Any]:
    entry: dict[str, Any] = {"provider": provider, "target": "image"}
    if amount is not None:
        entry["price"] = {"amount": amount, "unit": "image"}
    return entry


def make_catalog() -> Catalog:
    return parse_catalog(
        {
            "models": [
                {
                    "id": "pick",
                    "kind": "image",
                    "route_choice": "cheapest",
                    # listed dearest first: the catalog's order is not the walk's
                    "routes": [route("dear", 0.05), route("cheap", 0.01), route("middle", 0.03)],
                },
                {
                    "id": "listed",
                    "kind": "image",
                    "routes": [route("dear"), route("cheap"), route("middle")],
                },
                {
                    "id": "some-unpriced",
                    "kind": "image",
                    "route_choice": "cheapest",
                    "routes": [route("free"), route("dear"), route("middle")],
                },
            ]
        },
        NAMES,
        source="test-catalog",
    )


CATALOG = make_catalog()
INPUT = {"prompt": "a fox", "num_images": 2}


@pytest.fixture
def fakes() -> dict[str, FakeProvider]:
    return {name: FakeProvider(name) for name in NAMES}


@pytest.fixture
def breakers() -> Breakers:
    return Breakers(BreakerPolicy(failure_threshold=POLICY.max_attempts, cooldown_seconds=3600))


def open_circuit(breakers: Breakers, route_name: str) -> None:
    for _ in range(POLICY.max_attempts):
        breakers.get(route_name).record(ok=False)


@pytest.fixture
def runner(
    store: SQLiteJobStore, tmp_path: Path, fakes: dict[str, FakeProvider], breakers: Breakers
) -> JobRunner:
    providers: dict[str, Provider] = dict(fakes)
    storage = LocalStorage(tmp_path / "files", OutputSource(max_bytes=1_000_000))
    return JobRunner(
        store,
        providers,
        storage,
        POLICY,
        job_timeout=30.0,
        breakers=breakers,
        prices=CATALOG.prices,
    )


def ranked(model_id: str, runner: JobRunner | None = None) -> list[str]:
    model = CATALOG.get(model_id)
    order = rank_routes(
        model,
        INPUT,
        CATALOG.prices,
        None if runner is None else runner.availability,
        None if runner is None else runner.latencies,
    )
    return [model.routes[i].provider for i in order]


async def claimed(store: SQLiteJobStore, model_id: str = "pick") -> tuple[Job, CatalogModel]:
    model = CATALOG.get(model_id)
    await JobService(store, CATALOG).submit(
        JobRequest(owner="alice", model=model, input=dict(INPUT))
    )
    [got] = await store.claim(model.lane, 1, "w1", 30.0)
    return got, model


async def final(store: SQLiteJobStore, job_id: str) -> Job:
    job = await store.get_job(job_id)
    assert job is not None
    return job


# -- the ranking ------------------------------------------------------------------------------


def test_interchangeable_routes_rank_cheapest_first() -> None:
    assert ranked("pick") == ["cheap", "middle", "dear"]


def test_routes_of_a_model_in_order_keep_the_catalogs_order() -> None:
    assert ranked("listed") == ["dear", "cheap", "middle"]


def test_unpriced_route_ranks_after_every_priced_one() -> None:
    # "free" is unpriced: its cost is unknown, not 0, so it is not the cheapest
    assert ranked("some-unpriced") == ["middle", "dear", "free"]


def test_routes_that_cannot_run_now_rank_after_those_that_can(
    runner: JobRunner, fakes: dict[str, FakeProvider], breakers: Breakers
) -> None:
    fakes["cheap"].available = False
    open_circuit(breakers, "middle:image")
    assert ranked("pick", runner) == ["dear", "cheap", "middle"]


def test_equal_prices_rank_by_recent_latency_then_by_the_catalog() -> None:
    model = parse_catalog(
        {
            "models": [
                {
                    "id": "same-price",
                    "kind": "image",
                    "route_choice": "cheapest",
                    "routes": [route("dear", 0.02), route("cheap", 0.02), route("middle", 0.02)],
                }
            ]
        },
        NAMES,
        source="t",
    )
    pick = model.get("same-price")
    latencies = RouteLatencies()
    assert rank_routes(pick, INPUT, model.prices, None, latencies) == [0, 1, 2]
    for seconds in (9.0, 1.0, 2.0):
        latencies.record("middle:image", seconds)
    for seconds in (4.0, 5.0, 6.0):
        latencies.record("dear:image", seconds)
    # middle's p50 is 2 s, dear's 5 s; cheap has no record here yet
    assert rank_routes(pick, INPUT, model.prices, None, latencies) == [2, 0, 1]


def test_route_latencies_keep_a_bounded_window_and_a_bounded_number_of_routes() -> None:
    latencies = RouteLatencies(window=3, routes=2)
    for seconds in (100.0, 1.0, 2.0, 3.0):
        latencies.record("a", seconds)
    assert latencies.p50("a") == 2.0  # 100 s fell out of the window
    latencies.record("b", 1.0)
    latencies.record("c", 1.0)
    assert latencies.p50("a") is None and latencies.p50("c") == 1.0


def test_a_resumed_job_keeps_the_routes_it_tried_and_carries_on_from_the_last() -> None:
    model = CATALOG.get("pick")
    attempts = [
        Attempt(n=1, route="cheap:image", route_index=1, provider="cheap", place=0),
        Attempt(n=2, route="dear:image", route_index=0, provider="dear", place=1),
    ]
    order, start = walk_order(model, INPUT, attempts, CATALOG.prices)
    assert (order, start) == ([1, 0, 2], 1)


# -- the runner's walk ------------------------------------------------------------------------


async def test_runner_submits_to_the_cheapest_route(
    runner: JobRunner, store: SQLiteJobStore, fakes: dict[str, FakeProvider]
) -> None:
    job, model = await claimed(store)

    await runner.run(job, model)

    got = await final(store, job.id)
    assert got.status is Status.COMPLETED
    assert [len(fakes[n].submits) for n in ("cheap", "middle", "dear")] == [1, 0, 0]
    [attempt] = got.attempts
    assert (attempt.route, attempt.route_index, attempt.place) == ("cheap:image", 1, 0)
    assert got.fallback_used is False  # the first choice ran, though it is listed second
    # estimated for the two images asked at $0.01, final for the one the fake returned
    assert (attempt.estimate, attempt.cost) == (20_000, 10_000)


async def test_unavailable_cheaper_route_is_passed_over(
    runner: JobRunner, store: SQLiteJobStore, fakes: dict[str, FakeProvider], breakers: Breakers
) -> None:
    open_circuit(breakers, "cheap:image")  # the cheapest route is paused
    job, model = await claimed(store)

    await runner.run(job, model)

    got = await final(store, job.id)
    assert got.status is Status.COMPLETED
    assert fakes["cheap"].submits == [] and fakes["dear"].submits == []
    assert [a.route for a in got.attempts] == ["middle:image"]


async def test_failure_of_the_cheapest_falls_back_to_the_next_cheapest(
    runner: JobRunner, store: SQLiteJobStore, fakes: dict[str, FakeProvider]
) -> None:
    fakes["cheap"].scripts = [fails(ProviderTransientError("busy"))] * POLICY.max_attempts
    job, model = await claimed(store)

    await runner.run(job, model)

    got = await final(store, job.id)
    assert got.status is Status.COMPLETED
    assert [a.route for a in got.attempts] == ["cheap:image"] * POLICY.max_attempts + [
        "middle:image"
    ]
    assert [a.place for a in got.attempts] == [0] * POLICY.max_attempts + [1]
    assert fakes["dear"].submits == []  # listed before "middle", but dearer
    assert got.fallback_used is True


async def test_failed_job_names_its_routes_in_the_order_it_tried_them(
    runner: JobRunner, store: SQLiteJobStore, fakes: dict[str, FakeProvider]
) -> None:
    for fake in fakes.values():
        fake.default = lambda: fails(ProviderTransientError("busy"))
    job, model = await claimed(store)

    await runner.run(job, model)

    got = await final(store, job.id)
    assert got.status is Status.FAILED and got.error is not None
    message = got.error["message"]
    assert message.startswith("Every route failed. cheap:image (primary)")
    assert message.index("middle:image (fallback)") < message.index("dear:image (fallback)")
    tried = [a.provider for a in got.attempts]
    assert tried == ["cheap", "cheap", "middle", "middle", "dear", "dear"]


async def test_resumed_job_does_not_go_back_to_a_route_it_left(
    runner: JobRunner, store: SQLiteJobStore, fakes: dict[str, FakeProvider]
) -> None:
    job, model = await claimed(store)
    left = Attempt(n=1, route="cheap:image", route_index=1, provider="cheap", place=0)
    left.close(Outcome.FAILED, {"code": "provider_transient_error", "message": "busy"})
    # the gateway stopped while the next route's submit was in flight
    job.attempts = [left, Attempt(n=2, route="middle:image", route_index=2, provider="middle")]

    await runner.run(job, model)

    got = await final(store, job.id)
    assert got.status is Status.COMPLETED
    assert [a.route for a in got.attempts] == ["cheap:image", "middle:image", "middle:image"]
    assert [a.outcome for a in got.attempts] == ["failed", "interrupted", "succeeded"]
    assert got.attempts[-1].place == 1
    assert fakes["cheap"].submits == [] and fakes["dear"].submits == []


# -- the submit's estimate and reservation ---------------------------------------------------


async def test_submit_estimates_the_cheapest_and_reserves_the_dearest(
    store: SQLiteJobStore,
) -> None:
    service = JobService(store, CATALOG)
    limits = KeyLimits(budgets=Budgets(total=1_000_000))
    job, _ = await service.submit(
        JobRequest(owner="k", model=CATALOG.get("pick"), input=dict(INPUT), limits=limits)
    )
    spend = job.meta["spend"]
    assert spend["estimate"] == 20_000  # the cheap route: two images at $0.01
    assert spend["charged"] == 100_000  # the dear one: whichever runs is covered


async def test_submit_estimates_the_cheapest_route_that_can_run(
    store: SQLiteJobStore, fakes: dict[str, FakeProvider]
) -> None:
    fakes["cheap"].available = False
    availability = Availability(dict[str, Provider](fakes), Breakers())
    service = JobService(store, CATALOG, availability=availability)
    job, _ = await service.submit(
        JobRequest(owner="k", model=CATALOG.get("pick"), input=dict(INPUT))
    )
    assert job.meta["spend"]["estimate"] == 60_000  # "middle": two images at $0.03
    assert "charged" not in job.meta["spend"]  # no budget: nothing reserved
