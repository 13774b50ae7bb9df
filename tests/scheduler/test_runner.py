"""JobRunner: the route walk, retries, fallbacks, resumption and results, on a real store."""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import orjson
import pytest

from gateway.catalog import Catalog, CatalogModel, parse_catalog
from gateway.errors import (
    ProviderInputError,
    ProviderLostRequest,
    ProviderTransientError,
    ProviderUnavailable,
    StaleLease,
)
from gateway.jobs import Attempt, Job, Outcome, Status
from gateway.observability.observer import JobObserver
from gateway.scheduler.breaker import BreakerPolicy, Breakers, BreakerState
from gateway.scheduler.retry import RetryPolicy
from gateway.scheduler.runner import JobRunner
from gateway.service import JobRequest, JobService
from gateway.storage import LocalStorage, OutputSource
from gateway.store.sqlite import SQLiteJobStore
from providers.base import Output, Provider, ProviderRef, ProviderState, StateKind
from tests.fakes import (
    PNG,
    FakeProvider,
    Script,
    fails,
    poll_raises,
    running,
    submit_fails,
    succeed,
    succeeded,
)

POLICY = RetryPolicy(max_attempts=3, base=0.001, cap=0.01)


def route(provider: str, target: str = "image") -> dict[str, Any]:
    return {"provider": provider, "target": target}


def make_catalog() -> Catalog:
    return parse_catalog(
        {
            "models": [
                {"id": "one", "kind": "image", "routes": [route("fake")]},
                {"id": "two", "kind": "image", "routes": [route("fake"), route("fake2")]},
                {"id": "video", "kind": "video", "routes": [route("fake", "video")]},
                {
                    "id": "bounded",
                    "kind": "image",
                    "routes": [
                        {**route("fake"), "options": {"timeout_seconds": 0.2}},
                        route("fake2"),
                    ],
                },
            ]
        },
        ["fake", "fake2"],
        source="test-catalog",
    )


CATALOG = make_catalog()


@pytest.fixture
def storage(tmp_path: Path) -> LocalStorage:
    return LocalStorage(tmp_path / "files", OutputSource(max_bytes=1_000_000))


@pytest.fixture
def fake() -> FakeProvider:
    return FakeProvider("fake")


@pytest.fixture
def fake2() -> FakeProvider:
    return FakeProvider("fake2")


@pytest.fixture
def runner(
    store: SQLiteJobStore, storage: LocalStorage, fake: FakeProvider, fake2: FakeProvider
) -> JobRunner:
    providers: dict[str, Provider] = {"fake": fake, "fake2": fake2}
    return JobRunner(store, providers, storage, POLICY, job_timeout=30.0)


async def claimed(
    store: SQLiteJobStore, model_id: str = "one", raw: dict[str, Any] | None = None
) -> tuple[Job, CatalogModel]:
    model = CATALOG.get(model_id)
    job, _ = await JobService(store, CATALOG).submit(
        JobRequest(owner="alice", model=model, input=raw or {"prompt": "a fox", "seed": 11})
    )
    jobs = await store.claim(model.lane, 1, "w1", 30.0)
    assert [j.id for j in jobs] == [job.id]
    return jobs[0], model


async def reclaimed_with(store: SQLiteJobStore, job: Job, attempts: list[Attempt]) -> Job:
    """Simulate a crash after ``attempts`` were saved: hand the job back and claim it again."""
    await store.save_attempts(job.id, job.lease_token, attempts)
    await store.release(job.id, job.lease_token, attempts)
    again = await store.claim(job.lane, 1, "w2", 30.0)
    assert [j.id for j in again] == [job.id]
    return again[0]


async def final(store: SQLiteJobStore, job_id: str) -> Job:
    job = await store.get_job(job_id)
    assert job is not None
    return job


def open_attempt(request_id: str | None, route_index: int = 0, provider: str = "fake") -> Attempt:
    return Attempt(
        n=1,
        route=f"{provider}:image",
        route_index=route_index,
        provider=provider,
        request_id=request_id,
        ref=None if request_id is None else {"route": f"{provider}:image"},
    )


# -- success ----------------------------------------------------------------------------------


async def test_job_completes_with_its_outputs_stored_and_recorded(
    runner: JobRunner, store: SQLiteJobStore, storage: LocalStorage, fake: FakeProvider
) -> None:
    fake.scripts = [succeed(after=2, outputs=2)]
    job, model = await claimed(store)

    await runner.run(job, model)

    got = await final(store, job.id)
    assert got.status is Status.COMPLETED
    assert got.progress == 100
    assert got.error is None
    assert got.result is not None
    assert got.result["files"] == [
        {"name": "0.png", "content_type": "image/png", "width": 8, "height": 6},
        {"name": "1.png", "content_type": "image/png", "width": 8, "height": 6},
    ]
    assert got.result["seed"] == 11
    for name in ("0.png", "1.png"):
        path = storage.path(job.id, name)
        assert path is not None and path.read_bytes() == PNG
    assert len(got.attempts) == 1
    attempt = got.attempts[0]
    assert attempt.outcome == "succeeded"
    assert attempt.ended_at is not None
    assert attempt.request_id == fake.submits[0].request_id
    assert (got.retry_count, got.fallback_used, got.provider) == (0, False, "fake")


async def test_provider_gets_the_canonical_input(
    runner: JobRunner, store: SQLiteJobStore, fake: FakeProvider
) -> None:
    job, model = await claimed(store, raw={"prompt": "a fox", "width": 512, "seed": 3})
    await runner.run(job, model)
    [sub] = fake.submits
    assert sub.job_id == job.id
    assert sub.kind == "image"
    assert sub.route.name == "fake:image"
    assert sub.job_input == job.input
    assert sub.job_input["width"] == 512


async def test_result_of_video_carries_duration_and_fps(
    runner: JobRunner, store: SQLiteJobStore
) -> None:
    job, model = await claimed(store, "video", {"prompt": "x", "duration": 3, "fps": 12})
    await runner.run(job, model)
    got = await final(store, job.id)
    assert got.result is not None
    assert (got.result["duration"], got.result["fps"]) == (3, 12)


async def test_seed_reported_by_the_provider_wins(
    runner: JobRunner, store: SQLiteJobStore, fake: FakeProvider
) -> None:
    fake.scripts = [Script(polls=[succeeded(seed=777)])]
    job, model = await claimed(store)
    await runner.run(job, model)
    got = await final(store, job.id)
    assert got.result is not None and got.result["seed"] == 777


async def test_provider_reference_is_persisted_before_polling_starts(
    runner: JobRunner, store: SQLiteJobStore, fake: FakeProvider
) -> None:
    job, model = await claimed(store)
    seen: list[list[Attempt]] = []

    async def inspect(ref: ProviderRef) -> None:
        seen.append((await final(store, job.id)).attempts)

    fake.on_poll = inspect
    await runner.run(job, model)

    assert seen, "the provider was never polled"
    first = seen[0]
    assert len(first) == 1
    assert first[0].request_id == fake.submits[0].request_id
    assert first[0].ended_at is None


async def test_progress_is_persisted_while_the_provider_runs(
    runner: JobRunner, store: SQLiteJobStore, fake: FakeProvider
) -> None:
    # progress is saved at most every PROGRESS_SAVE_INTERVAL from the reference's write: the
    # request runs until the store shows it (or the runner gave up after the job's timeout)
    fake.scripts = [Script(polls=[running(40, queue_position=2)])]
    job, model = await claimed(store)
    seen: list[tuple[int, int | None, Status]] = []

    async def inspect(ref: ProviderRef) -> None:
        j = await final(store, job.id)
        seen.append((j.progress, j.queue_position, j.status))
        if (40, 2, Status.PROCESSING) in seen:
            fake.requests[ref.request_id].script.polls = [running(40), succeeded()]

    fake.on_poll = inspect
    await runner.run(job, model)

    assert (40, 2, Status.PROCESSING) in seen
    assert (await final(store, job.id)).progress == 100


async def test_latest_progress_is_persisted_even_when_it_then_stops_changing(
    runner: JobRunner, store: SQLiteJobStore, fake: FakeProvider
) -> None:
    fake.poll_interval = 0.005
    steady = [running(50) for _ in range(100)]  # about 0.5 s at 50 %, longer than any batching
    fake.scripts = [Script(polls=[running(40), running(50), *steady, succeeded()])]
    job, model = await claimed(store)
    stored_progress: list[int] = []

    async def inspect(ref: ProviderRef) -> None:
        stored_progress.append((await final(store, job.id)).progress)

    fake.on_poll = inspect
    await runner.run(job, model)

    assert stored_progress[-1] == 50, (
        f"the store still said {stored_progress[-1]}% after the provider had reported 50% "
        f"for {len(steady)} polls"
    )


# -- retries on the same route ----------------------------------------------------------------


async def test_transient_errors_are_retried_on_the_same_route_then_complete(
    runner: JobRunner, store: SQLiteJobStore, fake: FakeProvider, fake2: FakeProvider
) -> None:
    fake.scripts = [
        submit_fails(ProviderTransientError("429 slow down")),
        fails(ProviderTransientError("503 busy")),
        succeed(after=1),
    ]
    job, model = await claimed(store, "two")

    await runner.run(job, model)

    got = await final(store, job.id)
    assert got.status is Status.COMPLETED
    assert got.retry_count == 2
    assert got.fallback_used is False
    assert [a.route_index for a in got.attempts] == [0, 0, 0]
    assert [a.outcome for a in got.attempts] == ["failed", "failed", "succeeded"]
    assert got.attempts[0].error["code"] == "provider_transient_error"
    assert len(fake.submits) == 3
    assert fake2.submits == []


async def test_failed_status_read_keeps_following_the_same_request(
    runner: JobRunner, store: SQLiteJobStore, fake: FakeProvider
) -> None:
    fake.scripts = [poll_raises(ProviderTransientError("status 502"), then=[succeeded()])]
    job, model = await claimed(store)

    await runner.run(job, model)

    got = await final(store, job.id)
    assert got.status is Status.COMPLETED
    assert len(fake.submits) == 1
    assert len(got.attempts) == 1


async def test_exhausted_transient_retries_move_to_the_next_route(
    runner: JobRunner, store: SQLiteJobStore, fake: FakeProvider, fake2: FakeProvider
) -> None:
    fake.scripts = [fails(ProviderTransientError("busy")) for _ in range(POLICY.max_attempts)]
    job, model = await claimed(store, "two")

    await runner.run(job, model)

    got = await final(store, job.id)
    assert got.status is Status.COMPLETED
    assert len(fake.submits) == POLICY.max_attempts
    assert len(fake2.submits) == 1
    assert [a.route_index for a in got.attempts] == [0] * POLICY.max_attempts + [1]
    assert got.fallback_used is True


# -- input errors -----------------------------------------------------------------------------


@pytest.mark.parametrize("where", ["submit", "poll"])
async def test_input_error_fails_at_once_with_the_providers_message(
    runner: JobRunner,
    store: SQLiteJobStore,
    fake: FakeProvider,
    fake2: FakeProvider,
    where: str,
) -> None:
    error = ProviderInputError("the prompt was flagged by the safety checker")
    fake.scripts = [submit_fails(error) if where == "submit" else fails(error)]
    job, model = await claimed(store, "two")

    await runner.run(job, model)

    got = await final(store, job.id)
    assert got.status is Status.FAILED
    assert got.error == {
        "code": "invalid_input",
        "message": "the prompt was flagged by the safety checker",
    }
    assert len(fake.submits) + len(fake2.submits) == 1
    assert len(got.attempts) == 1
    assert got.attempts[0].outcome == "failed"
    assert got.result is None


# -- fallbacks --------------------------------------------------------------------------------


async def test_provider_unavailable_moves_to_the_next_route(
    runner: JobRunner, store: SQLiteJobStore, fake: FakeProvider, fake2: FakeProvider
) -> None:
    fake.scripts = [submit_fails(ProviderUnavailable("out of credit"))]
    job, model = await claimed(store, "two")

    await runner.run(job, model)

    got = await final(store, job.id)
    assert got.status is Status.COMPLETED
    assert got.fallback_used is True
    assert got.provider == "fake2"
    assert [(a.provider, a.route_index) for a in got.attempts] == [("fake", 0), ("fake2", 1)]
    assert [a.route for a in got.attempts] == ["fake:image", "fake2:image"]
    assert got.attempts[0].error["code"] == "provider_unavailable"
    assert len(fake.submits) == 1
    assert len(fake2.submits) == 1


async def test_unavailable_route_is_skipped_without_a_submit(
    runner: JobRunner, store: SQLiteJobStore, fake: FakeProvider, fake2: FakeProvider
) -> None:
    fake.available = False
    job, model = await claimed(store, "two")

    await runner.run(job, model)

    got = await final(store, job.id)
    assert got.status is Status.COMPLETED
    assert got.fallback_used is True
    assert got.provider == "fake2"
    assert fake.submits == []
    assert len(fake2.submits) == 1


async def test_unconfigured_provider_is_skipped(
    store: SQLiteJobStore, storage: LocalStorage, fake2: FakeProvider
) -> None:
    runner = JobRunner(store, {"fake2": fake2}, storage, POLICY, job_timeout=30.0)
    job, model = await claimed(store, "two")

    await runner.run(job, model)

    got = await final(store, job.id)
    assert got.status is Status.COMPLETED
    assert got.provider == "fake2"


async def test_all_routes_failing_names_every_route_primary_first_with_the_primarys_code(
    runner: JobRunner, store: SQLiteJobStore, fake: FakeProvider, fake2: FakeProvider
) -> None:
    fake.scripts = [submit_fails(ProviderUnavailable("first route down"))]
    fake2.scripts = [fails(ProviderUnavailable("second route down", code="backend_down"))]
    job, model = await claimed(store, "two")

    await runner.run(job, model)

    got = await final(store, job.id)
    assert got.status is Status.FAILED
    assert got.error is not None
    assert got.error["code"] == "provider_unavailable"  # the primary's
    message = got.error["message"]
    assert message.startswith("Every route failed.")
    assert message.index("fake:image") < message.index("first route down")
    assert message.index("first route down") < message.index("fake2:image")
    assert message.index("fake2:image") < message.index("second route down")
    assert [a.route_index for a in got.attempts] == [0, 1]
    assert all(a.outcome == "failed" for a in got.attempts)


async def test_a_fallback_skipped_as_not_configured_is_named_after_the_primarys_real_cause(
    runner: JobRunner, store: SQLiteJobStore, fake: FakeProvider, fake2: FakeProvider
) -> None:
    down = ProviderTransientError("cannot connect to fake.example (ConnectError)")
    fake.scripts = [submit_fails(down) for _ in range(POLICY.max_attempts)]
    fake2.available, fake2.unavailable_reason = False, "FAKE2_TOKEN is not set"
    job, model = await claimed(store, "two")

    await runner.run(job, model)

    got = await final(store, job.id)
    assert got.status is Status.FAILED and got.error is not None
    assert got.error["code"] == "provider_transient_error"
    message = got.error["message"]
    assert "Every route failed" not in message  # the fallback never ran
    assert message.index("fake.example") < message.index("fake2:image")
    assert f"{POLICY.max_attempts} tries" in message
    fallback = message[message.index("fake2:image") :]
    assert "skipped" in fallback and "not configured" in fallback
    assert "FAKE2_TOKEN is not set" in fallback
    assert fake2.submits == []


async def test_a_job_that_timed_out_on_its_primary_does_not_say_every_route_failed(
    store: SQLiteJobStore, storage: LocalStorage, fake: FakeProvider, fake2: FakeProvider
) -> None:
    providers: dict[str, Provider] = {"fake": fake, "fake2": fake2}
    runner = JobRunner(store, providers, storage, POLICY, job_timeout=0.3)
    fake.scripts = [Script(gate=asyncio.Event())]  # never finishes
    job, model = await claimed(store, "two")

    await runner.run(job, model)

    got = await final(store, job.id)
    assert got.status is Status.FAILED and got.error is not None
    assert got.error["code"] == "timeout"
    message = got.error["message"]
    assert "Every route failed" not in message
    assert "not tried" in message[message.index("fake2:image") :]
    assert fake2.submits == []


async def test_no_usable_route_fails_the_job(
    runner: JobRunner, store: SQLiteJobStore, fake: FakeProvider, fake2: FakeProvider
) -> None:
    fake.available = fake2.available = False
    job, model = await claimed(store, "two")

    await runner.run(job, model)

    got = await final(store, job.id)
    assert got.status is Status.FAILED
    assert got.error is not None and got.error["code"] == "provider_unavailable"
    assert fake.submits == fake2.submits == []


@pytest.mark.parametrize("host", ["xn--a.com", "xn--", "a" * 64 + ".example"])
async def test_an_output_url_with_an_invalid_host_name_fails_the_job_and_closes_the_attempt(
    runner: JobRunner, store: SQLiteJobStore, fake: FakeProvider, host: str
) -> None:
    output = Output(content_type="image/png", url=f"https://{host}/out.png")
    fake.scripts = [Script(polls=[ProviderState(StateKind.SUCCEEDED, outputs=(output,))])]
    job, model = await claimed(store)

    await runner.run(job, model)

    got = await final(store, job.id)
    assert got.status is Status.FAILED
    assert got.error is not None and got.error["code"] == "provider_unavailable", got.error
    assert "not a valid domain name" in got.error["message"]
    [attempt] = got.attempts
    assert attempt.outcome == "failed" and attempt.ended_at is not None


async def test_a_failure_reaches_the_routes_breaker_though_other_routes_crowd_it_out_meanwhile(
    store: SQLiteJobStore, storage: LocalStorage, fake: FakeProvider
) -> None:
    """While the job runs, its route's breaker (closed, nothing failed yet) is dropped to
    make room for others (a Tasks API client naming fal app after fal app); the failure must
    still count, or a failing route could be tried for ever under such pressure."""
    breakers = Breakers(BreakerPolicy(failure_threshold=1), max_breakers=4)
    runner = JobRunner(store, {"fake": fake}, storage, POLICY, job_timeout=30.0, breakers=breakers)

    async def crowd(ref: ProviderRef) -> None:
        for i in range(100):
            breakers.get(f"fal:fal-ai/app-{i}")

    fake.on_poll = crowd
    fake.scripts = [fails(ProviderUnavailable("the route is down"))]
    job, model = await claimed(store)

    await runner.run(job, model)

    assert breakers.state(model.routes[0].name) is BreakerState.OPEN


async def test_success_without_outputs_is_a_route_failure(
    runner: JobRunner, store: SQLiteJobStore, fake: FakeProvider, fake2: FakeProvider
) -> None:
    fake.scripts = [Script(polls=[ProviderState(StateKind.SUCCEEDED, progress=100)])]
    job, model = await claimed(store, "two")

    await runner.run(job, model)

    got = await final(store, job.id)
    assert got.status is Status.COMPLETED
    assert got.provider == "fake2"


async def test_job_past_its_time_limit_is_cancelled_at_the_provider_and_fails(
    store: SQLiteJobStore, storage: LocalStorage, fake: FakeProvider
) -> None:
    runner = JobRunner(store, {"fake": fake}, storage, POLICY, job_timeout=0.3)
    fake.scripts = [Script(gate=asyncio.Event())]  # never finishes
    job, model = await claimed(store)

    await runner.run(job, model)

    got = await final(store, job.id)
    assert got.status is Status.FAILED
    assert got.error is not None and got.error["code"] == "timeout"
    assert fake.cancels == [fake.submits[0].request_id]


async def test_a_hung_route_is_cancelled_at_its_own_timeout_and_the_fallback_runs(
    runner: JobRunner, store: SQLiteJobStore, fake: FakeProvider, fake2: FakeProvider
) -> None:
    fake.scripts = [Script(gate=asyncio.Event())]  # never finishes
    job, model = await claimed(store, "bounded")

    await runner.run(job, model)

    got = await final(store, job.id)
    assert got.status is Status.COMPLETED and got.provider == "fake2"
    assert fake.cancels == [fake.submits[0].request_id]
    assert got.attempts[0].error is not None
    assert got.attempts[0].error["code"] == "route_timeout"
    assert len(fake.submits) == 1  # a timed-out route is not retried


async def test_the_default_route_timeout_hands_a_hung_primary_to_its_fallback(
    store: SQLiteJobStore, storage: LocalStorage, fake: FakeProvider, fake2: FakeProvider
) -> None:
    providers: dict[str, Provider] = {"fake": fake, "fake2": fake2}
    runner = JobRunner(store, providers, storage, POLICY, job_timeout=30.0, route_timeout=0.2)
    fake.scripts = [Script(gate=asyncio.Event())]
    job, model = await claimed(store, "two")

    await runner.run(job, model)

    got = await final(store, job.id)
    assert got.status is Status.COMPLETED and got.provider == "fake2"
    assert fake.cancels == [fake.submits[0].request_id]


async def test_the_default_route_timeout_leaves_the_last_route_to_the_jobs_limit(
    store: SQLiteJobStore, storage: LocalStorage, fake: FakeProvider
) -> None:
    runner = JobRunner(store, {"fake": fake}, storage, POLICY, job_timeout=30.0, route_timeout=0.05)
    gate = asyncio.Event()
    fake.scripts = [Script(gate=gate)]
    job, model = await claimed(store)

    async def open_gate_after_the_route_timeout(ref: ProviderRef) -> None:
        if time.monotonic() - started > 0.3:
            gate.set()

    started = time.monotonic()
    fake.on_poll = open_gate_after_the_route_timeout
    await runner.run(job, model)

    got = await final(store, job.id)
    assert got.status is Status.COMPLETED, got.error
    assert fake.cancels == []


# -- lost requests and resumption -------------------------------------------------------------


async def test_lost_request_is_resubmitted(
    runner: JobRunner, store: SQLiteJobStore, fake: FakeProvider
) -> None:
    fake.scripts = [poll_raises(ProviderLostRequest("unknown request")), succeed()]
    job, model = await claimed(store)

    await runner.run(job, model)

    got = await final(store, job.id)
    assert got.status is Status.COMPLETED
    assert len(fake.submits) == 2
    assert [a.request_id for a in got.attempts] == [s.request_id for s in fake.submits]
    assert got.attempts[0].error["code"] == "provider_lost_request"


async def test_resumed_attempt_with_a_reference_is_polled_not_resubmitted(
    runner: JobRunner, store: SQLiteJobStore, fake: FakeProvider
) -> None:
    job, model = await claimed(store)
    fake.add_request("req-from-before-the-crash", succeed(after=1))
    job = await reclaimed_with(store, job, [open_attempt("req-from-before-the-crash")])

    await runner.run(job, model)

    got = await final(store, job.id)
    assert got.status is Status.COMPLETED
    assert fake.submits == []
    assert "req-from-before-the-crash" in fake.polled
    assert len(got.attempts) == 1
    assert got.attempts[0].request_id == "req-from-before-the-crash"
    assert got.attempts[0].outcome == "succeeded"


async def test_resumed_fallback_attempt_stays_on_its_route(
    runner: JobRunner, store: SQLiteJobStore, fake: FakeProvider, fake2: FakeProvider
) -> None:
    job, model = await claimed(store, "two")
    failed_first = replace(open_attempt("req-a"), ended_at=time.time(), outcome=Outcome.FAILED)
    resumed = replace(open_attempt("req-b", route_index=1, provider="fake2"), n=2)
    fake2.add_request("req-b", succeed())
    job = await reclaimed_with(store, job, [failed_first, resumed])

    await runner.run(job, model)

    got = await final(store, job.id)
    assert got.status is Status.COMPLETED
    assert fake.submits == [] and fake2.submits == []
    assert fake.polled == []
    assert got.provider == "fake2"


async def test_resumed_attempt_without_a_reference_is_closed_and_submitted_again(
    runner: JobRunner, store: SQLiteJobStore, fake: FakeProvider
) -> None:
    job, model = await claimed(store)
    job = await reclaimed_with(store, job, [open_attempt(None)])

    await runner.run(job, model)

    got = await final(store, job.id)
    assert got.status is Status.COMPLETED
    assert len(fake.submits) == 1
    # the interrupted attempt stays in the log, so submissions never exceed attempts
    assert [a.outcome for a in got.attempts] == ["interrupted", "succeeded"]
    assert got.attempts[1].request_id == fake.submits[0].request_id


async def test_attempt_is_logged_before_the_submit_reaches_the_provider(
    runner: JobRunner, store: SQLiteJobStore, fake: FakeProvider
) -> None:
    job, model = await claimed(store)
    seen: list[list[Attempt]] = []
    original = fake.submit

    async def spying_submit(*args: Any, **kwargs: Any) -> ProviderRef:
        stored_job = await store.get_job(job.id)
        assert stored_job is not None
        seen.append(stored_job.attempts)
        return await original(*args, **kwargs)

    fake.submit = spying_submit  # type: ignore[method-assign]
    await runner.run(job, model)

    assert len(seen) == 1 and len(seen[0]) == 1
    assert seen[0][0].request_id is None and seen[0][0].ended_at is None


async def test_job_cancelled_before_its_submit_never_reaches_the_provider(
    runner: JobRunner, store: SQLiteJobStore, fake: FakeProvider
) -> None:
    job, model = await claimed(store)
    await store.cancel(job.id)

    with pytest.raises(StaleLease):
        await runner.run(job, model)

    assert fake.submits == []
    got = await final(store, job.id)
    assert got.status is Status.CANCELLED


async def test_resumed_reference_the_provider_forgot_is_resubmitted(
    runner: JobRunner, store: SQLiteJobStore, fake: FakeProvider
) -> None:
    job, model = await claimed(store)
    job = await reclaimed_with(store, job, [open_attempt("req-forgotten")])

    await runner.run(job, model)

    got = await final(store, job.id)
    assert got.status is Status.COMPLETED
    assert fake.polled[0] == "req-forgotten"
    assert len(fake.submits) == 1
    assert [a.request_id for a in got.attempts] == ["req-forgotten", fake.submits[0].request_id]
    assert got.attempts[0].error["code"] == "provider_lost_request"


# -- cancellation after a user cancel ---------------------------------------------------------


async def test_cancel_provider_stops_the_request_and_closes_the_attempt(
    runner: JobRunner, store: SQLiteJobStore, fake: FakeProvider
) -> None:
    job, model = await claimed(store)
    job.attempts = [open_attempt("req-running")]
    await store.save_attempts(job.id, job.lease_token, job.attempts)
    await store.cancel(job.id)

    await runner.cancel_provider(job, model)

    assert fake.cancels == ["req-running"]
    got = await final(store, job.id)
    assert got.status is Status.CANCELLED
    assert got.attempts[0].outcome == "cancelled"


async def test_a_job_whose_lease_ran_out_is_left_alone_without_a_logged_attempt(
    runner: JobRunner, store: SQLiteJobStore, fake: FakeProvider
) -> None:
    job, model = await claimed(store)
    job.lease_expires = time.time() - 1  # the heartbeat could not renew it in time

    with pytest.raises(StaleLease):
        await runner.run(job, model)

    assert fake.submits == []
    got = await final(store, job.id)
    assert got.attempts == []  # nothing that would look like a crash in the submit window
    assert got.status is Status.PROCESSING  # its next owner takes it once the lease expires


@pytest.mark.parametrize("block", ["none", "not_enabled", "unavailable", "circuit_open"])
async def test_the_runner_skips_exactly_the_routes_the_catalog_calls_unavailable(
    store: SQLiteJobStore,
    storage: LocalStorage,
    fake: FakeProvider,
    fake2: FakeProvider,
    block: str,
) -> None:
    providers: dict[str, Provider] = {"fake": fake, "fake2": fake2}
    if block == "not_enabled":
        del providers["fake"]
    fake.available = block != "unavailable"
    breakers = Breakers(BreakerPolicy(failure_threshold=1, cooldown_seconds=60.0))
    runner = JobRunner(store, providers, storage, POLICY, job_timeout=30.0, breakers=breakers)
    job, model = await claimed(store, "two")
    if block == "circuit_open":
        breakers.get(model.routes[0].name).record(ok=False)
    shown = [r["available"] for r in runner.availability.routes(model)]

    await runner.run(job, model)

    got = await final(store, job.id)
    assert got.status is Status.COMPLETED
    assert shown == [block == "none", True]
    assert [a.route_index for a in got.attempts] == [shown.index(True)]


async def test_the_attempt_log_is_stored_as_the_same_json_as_before_attempts_were_typed(
    runner: JobRunner, store: SQLiteJobStore, fake: FakeProvider, tmp_path: Path
) -> None:
    fake.scripts = [fails(ProviderTransientError("status 502")), succeed()]
    job, model = await claimed(store)

    await runner.run(job, model)

    with contextlib.closing(sqlite3.connect(tmp_path / "jobs.db")) as db:
        [(raw,)] = db.execute("SELECT attempts FROM jobs WHERE id = ?", (job.id,)).fetchall()
    first, second = orjson.loads(raw)
    keys = ["n", "route", "route_index", "provider", "request_id", "ref"]
    keys += ["started_at", "ended_at", "outcome", "error"]
    keys += ["estimate", "cost"]  # the spend feature's two, appended (None: unpriced)
    assert list(first) == list(second) == keys
    assert (first["n"], first["outcome"], second["outcome"]) == (1, "failed", "succeeded")
    assert first["error"] == {"code": "provider_transient_error", "message": "status 502"}
    assert (first["route"], first["route_index"], first["provider"]) == ("fake:image", 0, "fake")
    assert second["error"] is None and isinstance(second["ended_at"], float)


# -- what the observer is told ----------------------------------------------------------------


class PollObserver(JobObserver):
    def __init__(self) -> None:
        self.polled: list[tuple[str, int]] = []
        self.ended: list[tuple[str, str]] = []

    def provider_polled(self, provider: str, polls: int) -> None:
        self.polled.append((provider, polls))

    def provider_ended(self, provider: str, via: str) -> None:
        self.ended.append((provider, via))


async def test_the_observer_hears_each_attempts_polls_and_how_its_end_was_learned(
    store: SQLiteJobStore, storage: LocalStorage, fake: FakeProvider, fake2: FakeProvider
) -> None:
    observer = PollObserver()
    providers: dict[str, Provider] = {"fake": fake, "fake2": fake2}
    runner = JobRunner(store, providers, storage, POLICY, job_timeout=30.0, observer=observer)
    fake.scripts = [succeed(after=3)]
    job, model = await claimed(store)

    await runner.run(job, model)

    assert observer.polled == [("fake", 4)] and len(fake.polled) == 4
    assert observer.ended == [("fake", "poll")]
    assert fake.poll_counts.total == 4
