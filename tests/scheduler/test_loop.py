"""The scheduler: claiming order, lane limits, cancels, shutdown hand-back, lease recovery."""

from __future__ import annotations

import asyncio
import errno
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from gateway.catalog import Catalog, CatalogModel, parse_catalog
from gateway.jobs import Attempt, Job, Status, new_job_id
from gateway.observability.observer import JobObserver
from gateway.scheduler.loop import Scheduler
from gateway.scheduler.retry import RetryPolicy
from gateway.scheduler.runner import JobRunner
from gateway.service import JobRequest, JobService
from gateway.storage import LocalStorage, OutputSource
from gateway.store.sqlite import SQLiteJobStore
from providers.base import Provider, RouteSpec
from tests.fakes import FakeProvider, Script, submit_fails, succeed

POLICY = RetryPolicy(max_attempts=3, base=0.001, cap=0.01)
CATALOG = parse_catalog(
    {
        "models": [
            {"id": "one", "kind": "image", "routes": [{"provider": "fake", "target": "image"}]},
            {"id": "other", "kind": "image", "routes": [{"provider": "fake2", "target": "image"}]},
        ]
    },
    ["fake", "fake2"],
    source="test-catalog",
)

MakeScheduler = Callable[..., Scheduler]


@pytest.fixture
def fake() -> FakeProvider:
    return FakeProvider("fake")


@pytest.fixture
def fake2() -> FakeProvider:
    return FakeProvider("fake2")


@pytest.fixture
async def make_scheduler(
    store: SQLiteJobStore, tmp_path: Path, fake: FakeProvider, fake2: FakeProvider
) -> AsyncIterator[MakeScheduler]:
    made: list[Scheduler] = []
    storage = LocalStorage(tmp_path / "files", OutputSource(max_bytes=1_000_000))

    def factory(
        *,
        concurrency: dict[str, int] | None = None,
        runner: JobRunner | None = None,
        catalog: Catalog = CATALOG,
        **kwargs: Any,
    ) -> Scheduler:
        providers: dict[str, Provider] = {"fake": fake, "fake2": fake2}
        runner = runner or JobRunner(store, providers, storage, POLICY, job_timeout=30.0)
        options: dict[str, Any] = {
            "lease_seconds": 5.0,
            "heartbeat_seconds": 0.05,
            "poll_seconds": 0.05,
        }
        options.update(kwargs)
        scheduler = Scheduler(
            store, catalog, runner, concurrency=concurrency or {"fake": 2, "fake2": 2}, **options
        )
        made.append(scheduler)
        return scheduler

    yield factory
    for scheduler in made:
        await scheduler.stop(grace=2.0)


def service(store: SQLiteJobStore, scheduler: Scheduler | None = None) -> JobService:
    return JobService(store, CATALOG, scheduler)


async def submit(
    store: SQLiteJobStore,
    model_id: str = "one",
    priority: int = 0,
    scheduler: Scheduler | None = None,
) -> Job:
    job, _ = await service(store, scheduler).submit(
        JobRequest(
            owner="alice",
            model=CATALOG.get(model_id),
            input={"prompt": "a fox", "width": 64, "height": 64},
            priority=priority,
        )
    )
    return job


async def eventually(
    check: Callable[[], Awaitable[bool]], timeout: float = 5.0, what: str = "condition"
) -> None:
    deadline = time.monotonic() + timeout
    while not await check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.01)


async def status_of(store: SQLiteJobStore, job_id: str) -> Status:
    job = await store.get_job(job_id)
    assert job is not None
    return job.status


async def get(store: SQLiteJobStore, job_id: str) -> Job:
    job = await store.get_job(job_id)
    assert job is not None
    return job


async def until_status(store: SQLiteJobStore, job_id: str, status: Status) -> None:
    async def check() -> bool:
        return await status_of(store, job_id) is status

    await eventually(check, what=f"{job_id} to become {status.value}")


async def until_polled(provider: FakeProvider, count: int = 1) -> None:
    async def check() -> bool:
        return len(set(provider.polled)) >= count

    await eventually(check, what=f"{count} request(s) of {provider.name} to be polled")


def gated(gate: asyncio.Event) -> Callable[[], Script]:
    return lambda: succeed(after=1, gate=gate)


# -- claiming ---------------------------------------------------------------------------------


async def test_jobs_run_by_priority_then_age(
    store: SQLiteJobStore, fake: FakeProvider, make_scheduler: MakeScheduler
) -> None:
    low_old = await submit(store, priority=0)
    high_old = await submit(store, priority=5)
    low_new = await submit(store, priority=0)
    high_new = await submit(store, priority=5)
    top = await submit(store, priority=9)
    scheduler = make_scheduler(concurrency={"fake": 1})

    await scheduler.run_until_idle(timeout=10)

    assert fake.submitted_job_ids() == [top.id, high_old.id, high_new.id, low_old.id, low_new.id]


async def test_burst_mode_runs_every_queued_job_to_the_end(
    store: SQLiteJobStore, fake: FakeProvider, fake2: FakeProvider, make_scheduler: MakeScheduler
) -> None:
    jobs = [await submit(store, "one") for _ in range(5)] + [
        await submit(store, "other") for _ in range(3)
    ]
    scheduler = make_scheduler()

    await scheduler.run_until_idle(timeout=10)

    for job in jobs:
        assert await status_of(store, job.id) is Status.COMPLETED
    assert len(fake.submits) == 5 and len(fake2.submits) == 3
    assert scheduler.inflight() == 0


async def test_run_until_idle_with_nothing_queued_returns_at_once(
    make_scheduler: MakeScheduler,
) -> None:
    scheduler = make_scheduler()
    await asyncio.wait_for(scheduler.run_until_idle(timeout=10), timeout=2)


async def test_never_more_than_the_lane_limit_in_flight(
    store: SQLiteJobStore, fake: FakeProvider, make_scheduler: MakeScheduler
) -> None:
    fake.default = lambda: succeed(after=4)
    jobs = [await submit(store) for _ in range(9)]
    scheduler = make_scheduler(concurrency={"fake": 3})

    await scheduler.run_until_idle(timeout=10)

    assert fake.max_active == 3
    assert len(fake.submits) == 9
    for job in jobs:
        assert await status_of(store, job.id) is Status.COMPLETED


async def test_lane_limit_holds_with_the_background_loop(
    store: SQLiteJobStore, fake: FakeProvider, make_scheduler: MakeScheduler
) -> None:
    fake.default = lambda: succeed(after=3)
    scheduler = make_scheduler(concurrency={"fake": 2})
    await scheduler.start()
    jobs = [await submit(store, scheduler=scheduler) for _ in range(8)]

    for job in jobs:
        await until_status(store, job.id, Status.COMPLETED)

    assert fake.max_active == 2


async def test_lanes_are_independent(
    store: SQLiteJobStore, fake: FakeProvider, fake2: FakeProvider, make_scheduler: MakeScheduler
) -> None:
    gate = asyncio.Event()
    fake.default = gated(gate)
    scheduler = make_scheduler(concurrency={"fake": 1, "fake2": 1})
    await scheduler.start()
    slow = [await submit(store, "one", scheduler=scheduler) for _ in range(2)]
    fast = [await submit(store, "other", scheduler=scheduler) for _ in range(3)]

    for job in fast:
        await until_status(store, job.id, Status.COMPLETED)

    assert len(fake.submits) == 1, "the saturated lane took more than its limit"
    assert await status_of(store, slow[0].id) is Status.PROCESSING
    assert await status_of(store, slow[1].id) is Status.QUEUED
    gate.set()
    for job in slow:
        await until_status(store, job.id, Status.COMPLETED)
    assert fake.max_active == 1


# -- cancels ----------------------------------------------------------------------------------


async def test_user_cancel_of_running_job_cancels_at_the_provider_and_sticks(
    store: SQLiteJobStore, fake: FakeProvider, make_scheduler: MakeScheduler
) -> None:
    gate = asyncio.Event()
    fake.default = gated(gate)
    scheduler = make_scheduler()
    await scheduler.start()
    job = await submit(store, scheduler=scheduler)
    await until_polled(fake)

    cancelled = await service(store, scheduler).cancel("alice", job.id)

    assert cancelled.status is Status.CANCELLED
    request_id = fake.submits[0].request_id

    async def provider_told() -> bool:
        return fake.cancels == [request_id]

    await eventually(provider_told, what="provider.cancel")
    gate.set()
    await asyncio.sleep(0.2)  # a zombie runner would complete the job in this time
    got = await get(store, job.id)
    assert got.status is Status.CANCELLED
    assert got.result is None
    assert got.attempts[-1].outcome == "cancelled"
    assert len(fake.submits) == 1
    assert scheduler.inflight() == 0


async def test_cancel_through_another_replica_is_noticed_by_the_heartbeat(
    store: SQLiteJobStore, fake: FakeProvider, make_scheduler: MakeScheduler
) -> None:
    fake.default = gated(asyncio.Event())
    scheduler = make_scheduler()
    await scheduler.start()
    job = await submit(store, scheduler=scheduler)
    await until_polled(fake)

    await store.cancel(job.id)  # as another gateway replica's API would, without telling us

    async def provider_told() -> bool:
        return fake.cancels == [fake.submits[0].request_id]

    await eventually(provider_told, what="provider.cancel after the lease was lost")
    assert await status_of(store, job.id) is Status.CANCELLED

    async def slot_freed() -> bool:
        return scheduler.inflight() == 0

    await eventually(slot_freed, what="the cancelled job's slot to be freed")


async def test_cancel_of_a_queued_job_never_reaches_the_provider(
    store: SQLiteJobStore, fake: FakeProvider, make_scheduler: MakeScheduler
) -> None:
    job = await submit(store)
    await service(store).cancel("alice", job.id)
    scheduler = make_scheduler()

    await scheduler.run_until_idle(timeout=10)

    assert fake.submits == []
    assert await status_of(store, job.id) is Status.CANCELLED


# -- shutdown and recovery --------------------------------------------------------------------


async def test_stop_hands_running_jobs_back_with_their_provider_reference(
    store: SQLiteJobStore, fake: FakeProvider, make_scheduler: MakeScheduler
) -> None:
    gate = asyncio.Event()
    fake.default = gated(gate)
    scheduler = make_scheduler()
    await scheduler.start()
    job = await submit(store, scheduler=scheduler)
    await until_polled(fake)

    await scheduler.stop(grace=2.0)

    got = await get(store, job.id)
    assert got.status is Status.QUEUED
    assert got.lease_owner is None
    assert got.attempts[-1].request_id == fake.submits[0].request_id
    assert got.attempts[-1].ended_at is None
    assert fake.cancels == [], "a shutdown must not cancel the paid-for request"
    assert scheduler.inflight() == 0

    gate.set()
    successor = make_scheduler(worker_id="successor")
    await successor.run_until_idle(timeout=10)

    assert await status_of(store, job.id) is Status.COMPLETED
    assert len(fake.submits) == 1, "the handed-back job was submitted again"


async def test_expired_lease_is_recovered_and_resumed_by_polling(
    store: SQLiteJobStore, fake: FakeProvider, make_scheduler: MakeScheduler
) -> None:
    job = await submit(store)
    [crashed] = await store.claim("fake", 1, "crashed-worker", 0.05)
    attempt = Attempt(
        n=1,
        route="fake:image",
        route_index=0,
        provider="fake",
        request_id="req-before-the-crash",
        ref={},
    )
    await store.save_attempts(job.id, crashed.lease_token, [attempt])
    fake.add_request("req-before-the-crash", succeed(after=1))
    await asyncio.sleep(0.1)  # the crashed worker's lease runs out
    scheduler = make_scheduler(worker_id="survivor")

    await scheduler.start()
    await until_status(store, job.id, Status.COMPLETED)

    assert fake.submits == []
    assert "req-before-the-crash" in fake.polled
    got = await get(store, job.id)
    assert got.lease_token == crashed.lease_token + 1
    assert len(got.attempts) == 1


async def test_heartbeat_keeps_a_long_jobs_lease_alive(
    store: SQLiteJobStore, fake: FakeProvider, make_scheduler: MakeScheduler
) -> None:
    gate = asyncio.Event()
    fake.default = gated(gate)
    scheduler = make_scheduler(lease_seconds=0.3, heartbeat_seconds=0.05)
    await scheduler.start()
    job = await submit(store, scheduler=scheduler)
    await until_polled(fake)

    await asyncio.sleep(0.6)  # twice the lease

    got = await get(store, job.id)
    assert got.status is Status.PROCESSING
    assert got.lease_expires is not None and got.lease_expires > time.time()
    assert await store.requeue_expired(time.time()) == 0
    gate.set()
    await until_status(store, job.id, Status.COMPLETED)
    assert len(fake.submits) == 1


# -- failures ---------------------------------------------------------------------------------


async def test_job_whose_model_left_the_catalog_fails_with_model_not_found(
    store: SQLiteJobStore, fake: FakeProvider, make_scheduler: MakeScheduler
) -> None:
    now = time.time()
    orphan = Job(
        id=new_job_id(),
        owner="alice",
        kind="image",
        model="retired-model",
        input={"prompt": "x"},
        lane="fake",
        created_at=now,
        updated_at=now,
    )
    await store.insert_job(orphan)
    observer = RecordingObserver()
    scheduler = make_scheduler(observer=observer)

    await scheduler.run_until_idle(timeout=10)

    got = await get(store, orphan.id)
    assert got.status is Status.FAILED
    assert got.error is not None and got.error["code"] == "model_not_found"
    assert fake.submits == []
    assert observer.events == [("claimed", orphan.id), ("FAILED", orphan.id)]


class RecordingObserver(JobObserver):
    def __init__(self) -> None:
        self.events: list[tuple[str, str]] = []

    def job_claimed(self, job: Job) -> None:
        self.events.append(("claimed", job.id))

    def job_finished(self, job: Job, status: Status) -> None:
        self.events.append((status.value, job.id))


class CrashOnce(JobRunner):
    def __init__(self, inner: JobRunner, error: Exception | None = None, *, times: int = 1) -> None:
        super().__init__(
            inner.store, inner.providers, inner.storage, inner.policy, job_timeout=30.0
        )
        self.error = error or RuntimeError("a bug in the runner at /srv/backserv/gateway/x.py")
        self.times = times
        self.crashed: list[str] = []

    async def run(self, job: Job, model: CatalogModel) -> None:
        if len(self.crashed) < self.times:
            self.crashed.append(job.id)
            raise self.error
        await super().run(job, model)


async def test_crashing_runner_fails_its_job_and_the_loop_carries_on(
    store: SQLiteJobStore, fake: FakeProvider, tmp_path: Path, make_scheduler: MakeScheduler
) -> None:
    storage = LocalStorage(tmp_path / "files", OutputSource(max_bytes=1_000_000))
    runner = CrashOnce(JobRunner(store, {"fake": fake}, storage, POLICY, job_timeout=30.0))
    scheduler = make_scheduler(runner=runner, concurrency={"fake": 1})
    await scheduler.start()
    first = await submit(store, scheduler=scheduler)
    await until_status(store, first.id, Status.FAILED)

    second = await submit(store, scheduler=scheduler)
    await until_status(store, second.id, Status.COMPLETED)

    got = await get(store, first.id)
    assert got.error is not None and got.error["code"] == "internal_error"
    assert "a bug" not in got.error["message"] and "/srv" not in got.error["message"]
    assert runner.crashed == [first.id]
    assert scheduler.running
    assert scheduler.inflight() == 0


async def test_a_job_whose_run_hits_emfile_is_handed_back_and_completes(
    store: SQLiteJobStore,
    fake: FakeProvider,
    tmp_path: Path,
    make_scheduler: MakeScheduler,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr("gateway.scheduler.loop.HAND_BACK_PAUSE", 0.01)
    storage = LocalStorage(tmp_path / "files", OutputSource(max_bytes=1_000_000))
    emfile = OSError(errno.EMFILE, "Too many open files", "/srv/backserv/.venv/lib/x.py")
    inner = JobRunner(store, {"fake": fake}, storage, POLICY, job_timeout=30.0)
    runner = CrashOnce(inner, emfile, times=3)
    scheduler = make_scheduler(runner=runner, concurrency={"fake": 1})
    await scheduler.start()
    job = await submit(store, scheduler=scheduler)

    await until_status(store, job.id, Status.COMPLETED)

    assert runner.crashed == [job.id] * 3  # handed back and claimed again each time
    assert (await get(store, job.id)).error is None


async def test_provider_raising_an_unexpected_exception_does_not_stop_burst_mode(
    store: SQLiteJobStore, fake: FakeProvider, make_scheduler: MakeScheduler
) -> None:
    fake.scripts = [submit_fails(RuntimeError("adapter bug"))]
    broken = await submit(store)
    fine = await submit(store)
    scheduler = make_scheduler(concurrency={"fake": 1})

    await scheduler.run_until_idle(timeout=10)

    got = await get(store, broken.id)
    assert got.status is Status.FAILED
    assert got.error is not None and got.error["code"] == "internal_provider_error"
    assert "adapter bug" not in got.error["message"]
    assert await status_of(store, fine.id) is Status.COMPLETED


async def test_a_job_with_its_own_route_chain_runs_on_those_routes(
    store: SQLiteJobStore, fake: FakeProvider, fake2: FakeProvider, make_scheduler: MakeScheduler
) -> None:
    scheduler = make_scheduler()
    service = JobService(store, scheduler.catalog, scheduler)
    model = scheduler.catalog.get("one")
    override = [RouteSpec(fake2.name, "other-target")]

    job, _ = await service.submit(
        JobRequest(owner="alice", model=model, input={"prompt": "x"}, routes=override)
    )
    await scheduler.run_until_idle(timeout=10)

    done = await store.get_job(job.id)
    assert done is not None and done.status is Status.COMPLETED
    assert fake.submits == [] and len(fake2.submits) == 1
    assert done.attempts[0].route == f"{fake2.name}:other-target"
    assert done.lane == fake2.name
