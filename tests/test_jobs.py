"""Jobs: the transition table, derived fields, and JobService over a real SQLite store."""

from __future__ import annotations

import itertools
import re
from pathlib import Path
from typing import Any

import orjson
import pytest

from gateway.catalog import Catalog, load_catalog
from gateway.errors import Conflict, InvalidRequest, NotFound, UnknownModel
from gateway.jobs import (
    TERMINAL,
    Attempt,
    Job,
    Outcome,
    Status,
    check_transition,
    new_job_id,
    sources_of,
)
from gateway.kinds import MAX_SEED
from gateway.service import JobRequest, JobService
from gateway.store.sqlite import SQLiteJobStore
from providers.registry import KNOWN_PROVIDERS
from tests.mersenne import predict_next_96

ROOT = Path(__file__).resolve().parent.parent
Q, P, DONE, FAIL, CXL = (
    Status.QUEUED,
    Status.PROCESSING,
    Status.COMPLETED,
    Status.FAILED,
    Status.CANCELLED,
)
#: written out here, independently of gateway.jobs.TRANSITIONS
LEGAL = {(Q, P), (Q, CXL), (P, DONE), (P, FAIL), (P, CXL), (P, Q)}
ALL_PAIRS = list(itertools.product(Status, Status))


# -- the transition table ---------------------------------------------------------------------


@pytest.mark.parametrize(("src", "dst"), sorted(LEGAL))
def test_legal_transition_is_allowed(src: Status, dst: Status) -> None:
    check_transition(src, dst, "job-1")


@pytest.mark.parametrize(("src", "dst"), [p for p in ALL_PAIRS if p not in LEGAL])
def test_illegal_transition_raises_conflict(src: Status, dst: Status) -> None:
    with pytest.raises(Conflict) as info:
        check_transition(src, dst, "job-1")
    expected = "job_already_finished" if src in (DONE, FAIL, CXL) else "illegal_transition"
    assert info.value.code == expected
    assert "job-1" in info.value.message
    assert info.value.status_code == 409


def test_terminal_statuses_are_completed_failed_cancelled() -> None:
    assert {s for s in Status if s.terminal} == {DONE, FAIL, CXL}
    assert frozenset({DONE, FAIL, CXL}) == TERMINAL


@pytest.mark.parametrize("target", list(Status))
def test_sources_of_lists_exactly_the_legal_sources(target: Status) -> None:
    assert set(sources_of(target)) == {src for src, dst in LEGAL if dst == target}


def test_sources_of_cancelled_are_queued_and_processing() -> None:
    assert set(sources_of(CXL)) == {Q, P}


# -- the job record ---------------------------------------------------------------------------


def attempt(route_index: int, provider: str) -> Attempt:
    route = f"{provider}:image"
    return Attempt(n=1, route=route, route_index=route_index, provider=provider, request_id="r")


def bare_job(**kwargs: Any) -> Job:
    return Job(
        id=new_job_id(), owner="o", kind="image", model="m", input={}, lane="sandbox", **kwargs
    )


#: every shape an attempt is stored in, as the runner writes it (the ``attempts`` column)
ATTEMPT_SHAPES: dict[str, dict[str, Any]] = {
    # opened and persisted, the submit not answered yet (the submit window)
    "open": {
        "n": 1,
        "route": "fal:fal-ai/flux/dev",
        "route_index": 0,
        "provider": "fal",
        "request_id": None,
        "ref": None,
        "started_at": 1700000000.25,
        "ended_at": None,
        "outcome": None,
        "error": None,
        "estimate": None,
        "cost": None,
    },
    # submitted, then the lease was lost (a crash): the next owner resumes it by polling
    "lost": {
        "n": 2,
        "route": "replicate:black-forest-labs/flux-dev",
        "route_index": 1,
        "provider": "replicate",
        "request_id": "r-8f2",
        "ref": {"urls": {"get": "https://api.replicate.com/v1/predictions/r-8f2"}},
        "started_at": 1700000001.5,
        "ended_at": None,
        "outcome": None,
        "error": None,
        "estimate": 25000,
        "cost": None,
    },
    "interrupted": {
        "n": 1,
        "route": "fal:fal-ai/flux/dev",
        "route_index": 0,
        "provider": "fal",
        "request_id": None,
        "ref": None,
        "started_at": 1700000000.25,
        "ended_at": 1700000030.0,
        "outcome": "interrupted",
        "error": {
            "code": "interrupted",
            "message": "the gateway stopped before the provider's answer was recorded",
        },
        "estimate": None,
        "cost": None,
    },
    "failed": {
        "n": 3,
        "route": "sandbox:image",
        "route_index": 0,
        "provider": "sandbox",
        "request_id": "sbx-1",
        "ref": {},
        "started_at": 1700000002.0,
        "ended_at": 1700000002.5,
        "outcome": "failed",
        "error": {"code": "provider_transient_error", "message": "status 502"},
        "estimate": 300,
        "cost": 120,
    },
    "succeeded": {
        "n": 1,
        "route": "sandbox:image",
        "route_index": 0,
        "provider": "sandbox",
        "request_id": "sbx-2",
        "ref": {"seed": 7},
        "started_at": 1700000003.0,
        "ended_at": 1700000004.0,
        "outcome": "succeeded",
        "error": None,
        "estimate": 25000,
        "cost": 25000,
    },
    # an interchangeable model's route (catalog route_choice = "cheapest"): the second listed,
    # tried first; ``place`` is stored only when it is not the route's index
    "chosen": {
        "n": 1,
        "route": "replicate:black-forest-labs/flux-dev",
        "route_index": 1,
        "provider": "replicate",
        "request_id": "r-9a1",
        "ref": None,
        "started_at": 1700000003.0,
        "ended_at": 1700000004.0,
        "outcome": "succeeded",
        "error": None,
        "estimate": 25000,
        "cost": 25000,
        "place": 0,
    },
    "cancelled": {
        "n": 1,
        "route": "local:sd15",
        "route_index": 0,
        "provider": "local",
        "request_id": "loc-1",
        "ref": None,
        "started_at": 1700000005.0,
        "ended_at": 1700000006.0,
        "outcome": "cancelled",
        "error": None,
        "estimate": 8000,
        "cost": None,
    },
}


@pytest.mark.parametrize("shape", list(ATTEMPT_SHAPES))
def test_an_attempt_reads_and_writes_the_same_json(shape: str) -> None:
    stored = orjson.loads(orjson.dumps(ATTEMPT_SHAPES[shape]))  # as read from a row
    attempt = Attempt.from_dict(stored)
    assert attempt.to_dict() == stored
    assert orjson.dumps(attempt.to_dict()) == orjson.dumps(ATTEMPT_SHAPES[shape])  # key order


def test_an_attempt_stored_before_costs_were_recorded_reads_as_unpriced() -> None:
    old = {k: v for k, v in ATTEMPT_SHAPES["succeeded"].items() if k not in ("estimate", "cost")}
    attempt = Attempt.from_dict(old)

    assert (attempt.estimate, attempt.cost, attempt.priced, attempt.charge) == (
        None,
        None,
        False,
        0,
    )


def test_an_attempts_charge_is_its_final_cost_else_its_estimate() -> None:
    assert Attempt.from_dict(ATTEMPT_SHAPES["failed"]).charge == 120  # a billed failure
    assert Attempt.from_dict(ATTEMPT_SHAPES["lost"]).charge == 25000  # may be running
    assert Attempt.from_dict(ATTEMPT_SHAPES["open"]).priced is False


def test_every_outcome_has_a_stored_shape() -> None:
    outcomes = {s["outcome"] for s in ATTEMPT_SHAPES.values()}
    assert outcomes == {None} | {o.value for o in Outcome}
    assert {o.value for o in Outcome} == {"succeeded", "failed", "cancelled", "interrupted"}


def test_an_attempt_read_from_json_is_typed() -> None:
    attempt = Attempt.from_dict(ATTEMPT_SHAPES["failed"])
    assert attempt.outcome is Outcome.FAILED and not attempt.open
    assert Attempt.from_dict(ATTEMPT_SHAPES["lost"]).open


def test_closing_an_attempt_records_when_how_and_why() -> None:
    attempt = Attempt.from_dict(ATTEMPT_SHAPES["open"])
    attempt.close(Outcome.FAILED, {"code": "timeout", "message": "too slow"}, at=1700000009.0)
    assert attempt.to_dict() == {
        **ATTEMPT_SHAPES["open"],
        "ended_at": 1700000009.0,
        "outcome": "failed",
        "error": {"code": "timeout", "message": "too slow"},
    }


def test_a_jobs_attempt_dicts_are_its_stored_attempts() -> None:
    shapes = [ATTEMPT_SHAPES["failed"], ATTEMPT_SHAPES["succeeded"]]
    job = bare_job(attempts=[Attempt.from_dict(s) for s in shapes])
    assert job.attempt_dicts() == shapes


def test_new_job_ids_are_prefixed_and_unique() -> None:
    ids = {new_job_id() for _ in range(100_000)}
    assert len(ids) == 100_000
    assert all(re.fullmatch(r"job-[0-9a-f]{24}", i) for i in ids)


def test_job_ids_cannot_be_predicted_from_earlier_ids() -> None:
    """Ids from a Mersenne Twister gave away the next ones (another key's included) after
    208 of them; ids from the OS's CSPRNG do not."""
    seen = [int(new_job_id().removeprefix("job-"), 16) for _ in range(208)]

    assert f"job-{predict_next_96(seen):024x}" != new_job_id()


def test_fresh_job_has_no_provider_no_retries_no_fallback() -> None:
    job = bare_job()
    assert (job.provider, job.retry_count, job.fallback_used) == (None, 0, False)
    assert job.status is Q


def test_derived_fields_come_from_the_attempts() -> None:
    job = bare_job(attempts=[attempt(0, "fal"), attempt(0, "fal"), attempt(1, "replicate")])
    assert job.provider == "replicate"
    assert job.retry_count == 2
    assert job.fallback_used is True


def test_a_first_choice_listed_after_another_route_is_not_a_fallback() -> None:
    chosen = Attempt.from_dict(ATTEMPT_SHAPES["chosen"])
    assert bare_job(attempts=[chosen]).fallback_used is False
    then = attempt(0, "fal")
    then.place = 1
    assert bare_job(attempts=[chosen, then]).fallback_used is True


def test_retries_on_the_primary_route_are_not_a_fallback() -> None:
    job = bare_job(attempts=[attempt(0, "fal"), attempt(0, "fal")])
    assert job.retry_count == 1
    assert job.fallback_used is False


# -- JobService -------------------------------------------------------------------------------


class RecordingWaker:
    def __init__(self) -> None:
        self.wakes = 0
        self.cancelled: list[str] = []

    def wake(self) -> None:
        self.wakes += 1

    def job_cancelled(self, job_id: str) -> None:
        self.cancelled.append(job_id)


@pytest.fixture(scope="module")
def catalog() -> Catalog:
    return load_catalog(ROOT / "catalog.toml", KNOWN_PROVIDERS)


@pytest.fixture
def waker() -> RecordingWaker:
    return RecordingWaker()


@pytest.fixture
def service(store: SQLiteJobStore, catalog: Catalog, waker: RecordingWaker) -> JobService:
    return JobService(store, catalog, waker)


async def submit(service: JobService, owner: str = "alice", **input_: Any) -> Job:
    job, _ = await service.submit(
        JobRequest(
            owner=owner, model=service.resolve("sandbox-image"), input={"prompt": "a fox", **input_}
        )
    )
    return job


async def test_submit_stores_a_queued_job_with_validated_input(
    service: JobService, store: SQLiteJobStore, waker: RecordingWaker
) -> None:
    job, replayed = await service.submit(
        JobRequest(
            owner="alice",
            model=service.resolve("sandbox-image"),
            input={"prompt": "a fox", "width": 512},
            priority=3,
            meta={"face": "jobs"},
        )
    )
    assert not replayed

    got = await store.get_job(job.id)
    assert got is not None
    assert got.status is Q
    assert got.owner == "alice"
    assert (got.kind, got.model, got.lane) == ("image", "sandbox-image", "sandbox")
    assert got.priority == 3
    assert got.meta == {"face": "jobs"}
    assert got.input["width"] == 512
    assert got.input["steps"] == 20  # the catalog model's default
    assert 0 <= got.input["seed"] <= MAX_SEED
    assert got.input == job.input
    assert waker.wakes == 1


async def test_submit_of_invalid_input_stores_nothing(
    service: JobService, store: SQLiteJobStore, waker: RecordingWaker
) -> None:
    with pytest.raises(InvalidRequest) as info:
        await submit(service, width=4096)  # over sandbox-image's max_width
    assert info.value.param == "width"
    assert await store.list_jobs(None, limit=10) == ([], False)
    assert waker.wakes == 0


async def test_submit_error_carries_the_param_prefix(service: JobService) -> None:
    with pytest.raises(InvalidRequest) as info:
        await service.submit(
            JobRequest(
                owner="a",
                model=service.resolve("sandbox-image"),
                input={"prompt": "x", "bogus": 1},
                param_prefix="input.",
            )
        )
    assert info.value.param == "input.bogus"


def test_resolve_unknown_model_raises_unknown_model(service: JobService) -> None:
    with pytest.raises(UnknownModel):
        service.resolve("no-such-model")


@pytest.mark.parametrize("model_id", [None, "", 42])
def test_resolve_without_model_is_a_missing_parameter(service: JobService, model_id: Any) -> None:
    with pytest.raises(InvalidRequest) as info:
        service.resolve(model_id)
    assert info.value.param == "model"
    assert not isinstance(info.value, UnknownModel)


def test_resolve_of_model_of_another_kind_is_rejected(service: JobService) -> None:
    with pytest.raises(InvalidRequest) as info:
        service.resolve("sandbox-video", kind="image")
    assert info.value.code == "wrong_model_kind"
    assert service.resolve("sandbox-video", kind="video").id == "sandbox-video"


async def test_get_returns_the_owners_job(service: JobService) -> None:
    job = await submit(service)
    assert (await service.get("alice", job.id)).id == job.id


async def test_get_of_another_owners_job_is_not_found(service: JobService) -> None:
    job = await submit(service, owner="alice")
    with pytest.raises(NotFound) as info:
        await service.get("bob", job.id)
    assert info.value.code == "job_not_found"


async def test_get_without_owner_reads_any_job(service: JobService) -> None:
    job = await submit(service, owner="alice")
    assert (await service.get(None, job.id)).owner == "alice"


async def test_get_of_unknown_job_is_not_found(service: JobService) -> None:
    with pytest.raises(NotFound):
        await service.get("alice", "job-000000000000000000000000")


async def test_list_shows_only_the_owners_jobs(service: JobService) -> None:
    mine = await submit(service, owner="alice")
    await submit(service, owner="bob")
    jobs, more = await service.list("alice", limit=10, after=None, status=None, model=None)
    assert [j.id for j in jobs] == [mine.id]
    assert more is False


async def test_cancel_of_queued_job_cancels_it_and_tells_the_waker(
    service: JobService, store: SQLiteJobStore, waker: RecordingWaker
) -> None:
    job = await submit(service)

    cancelled = await service.cancel("alice", job.id)

    assert cancelled.status is CXL
    got = await store.get_job(job.id)
    assert got is not None and got.status is CXL
    assert waker.cancelled == [job.id]


async def test_cancel_of_processing_job_cancels_it(
    service: JobService, store: SQLiteJobStore, waker: RecordingWaker
) -> None:
    job = await submit(service)
    await store.claim("sandbox", 1, "w1", 30.0)

    assert (await service.cancel("alice", job.id)).status is CXL
    assert waker.cancelled == [job.id]


@pytest.mark.parametrize("final", [DONE, FAIL, CXL])
async def test_cancel_of_terminal_job_is_a_conflict(
    service: JobService, store: SQLiteJobStore, waker: RecordingWaker, final: Status
) -> None:
    job = await submit(service)
    if final is CXL:
        await store.cancel(job.id)
    else:
        claimed = (await store.claim("sandbox", 1, "w1", 30.0))[0]
        await store.finish(job.id, claimed.lease_token, final, result={"files": []})

    with pytest.raises(Conflict) as info:
        await service.cancel("alice", job.id)

    assert info.value.code == "job_already_finished"
    got = await store.get_job(job.id)
    assert got is not None and got.status is final
    assert waker.cancelled == []


async def test_cancel_of_another_owners_job_is_not_found(
    service: JobService, store: SQLiteJobStore
) -> None:
    job = await submit(service, owner="alice")
    with pytest.raises(NotFound):
        await service.cancel("bob", job.id)
    got = await store.get_job(job.id)
    assert got is not None and got.status is Q
