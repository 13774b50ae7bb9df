"""Prometheus metrics (gateway/observability/metrics.py and its siblings), read back through
GET /metrics.

The scripted run submits jobs that succeed, fail on every retry, succeed on a fallback, and
are cancelled (queued and running), runs the scheduler in burst mode, and checks that every
counter says what happened.
"""

from __future__ import annotations

import asyncio
import itertools
import time
from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families
from starlette.applications import Starlette
from starlette.routing import Route

from gateway.api.request_id import RequestIdMiddleware
from gateway.app import Gateway
from gateway.catalog import Catalog, parse_catalog
from gateway.observability.http_metrics import HttpLatency, route_template
from gateway.observability.metrics import Metrics
from providers.registry import KNOWN_PROVIDERS
from tests.api.support import running
from tests.api.test_usage import catalog as priced_catalog
from tests.conftest import AUTH_A, make_settings, wait_for

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def route(target: str, **options: Any) -> dict[str, Any]:
    return {"provider": "sandbox", "target": target, "options": {"latency": 0.0, **options}}


SCRIPTED = parse_catalog(
    {
        "models": [
            {"id": "good", "kind": "image", "routes": [route("image")]},
            # the sandbox fails a request before it renders: the target only names the route
            {"id": "bad", "kind": "image", "routes": [route("upscale", failure_rate=1.0)]},
            {
                "id": "fallback",
                "kind": "image",
                "routes": [route("video", failure_rate=1.0), route("image")],
            },
            {"id": "slow", "kind": "image", "routes": [route("image", latency=30.0)]},
        ]
    },
    KNOWN_PROVIDERS,
    source="metrics-catalog",
)


async def scrape(client: httpx.AsyncClient) -> Samples:
    resp = await client.get("/metrics")
    assert resp.status_code == 200, resp.text
    samples: Samples = {}
    for family in text_string_to_metric_families(resp.text):
        for s in family.samples:
            samples[(s.name, frozenset(s.labels.items()))] = s.value
    return samples


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


def total(samples: Samples, name: str, **labels: str) -> float:
    """The sum over every series of ``name`` whose labels include ``labels``."""
    want = set(labels.items())
    return sum(v for (n, ls), v in samples.items() if n == name and want <= ls)


@pytest.fixture
async def scripted(tmp_path: Path) -> AsyncIterator[tuple[httpx.AsyncClient, Gateway]]:
    settings = make_settings(
        tmp_path,
        max_route_attempts=2,
        retry_base_seconds=0.001,
        breaker_failure_threshold=1000,
        breaker_min_calls=1000,
    )
    async with running(settings, catalog=SCRIPTED, start_scheduler=False) as (client, gw):
        assert gw.metrics is not None and gw.metrics.state is not None
        gw.metrics.state.count_ttl = 0.0  # every scrape counts afresh
        yield client, gw


async def submit(client: httpx.AsyncClient, model: str, **headers: str) -> str:
    body = {"model": model, "prompt": "a fox", "width": 64, "height": 64}
    resp = await client.post("/v1/jobs/images", json=body, headers={**AUTH_A, **headers})
    assert resp.status_code in (200, 202), resp.text
    job_id: str = resp.json()["id"]
    return job_id


async def status_of(client: httpx.AsyncClient, job_id: str) -> str:
    resp = await client.get(f"/v1/jobs/{job_id}", headers=AUTH_A)
    status: str = resp.json()["status"]
    return status


async def until_processing(client: httpx.AsyncClient, job_id: str) -> None:
    deadline = time.monotonic() + 10
    while await status_of(client, job_id) != "PROCESSING":
        assert time.monotonic() < deadline, f"job {job_id} never started"
        await asyncio.sleep(0.01)


async def test_counters_match_a_scripted_run(
    scripted: tuple[httpx.AsyncClient, Gateway],
) -> None:
    client, gw = scripted
    plan = {"good": 5, "bad": 2, "fallback": 2, "slow": 1}
    ids = {model: [await submit(client, model) for _ in range(n)] for model, n in plan.items()}

    queued = await scrape(client)
    assert value(queued, "backserv_queue_depth", provider="sandbox") == 10
    for model, n in plan.items():
        labels = {"model": model, "kind": "image", "provider": "sandbox"}
        assert value(queued, "backserv_jobs_submitted_total", **labels) == n

    for job_id in ids["good"][:2]:  # cancelled while QUEUED: never claimed
        resp = await client.post(f"/v1/jobs/{job_id}/cancel", headers=AUTH_A)
        assert resp.status_code == 200, resp.text
    burst = asyncio.create_task(gw.scheduler.run_until_idle(timeout=20))
    [slow] = ids["slow"]
    await until_processing(client, slow)  # then cancelled while running
    assert (await client.post(f"/v1/jobs/{slow}/cancel", headers=AUTH_A)).status_code == 200
    await burst

    outcomes = Counter()
    for model, job_ids in ids.items():
        for job_id in job_ids:
            outcomes[(model, await status_of(client, job_id))] += 1
    assert outcomes == {
        ("good", "COMPLETED"): 3,
        ("good", "CANCELLED"): 2,
        ("bad", "FAILED"): 2,
        ("fallback", "COMPLETED"): 2,
        ("slow", "CANCELLED"): 1,
    }
    done = await scrape(client)
    finished = "backserv_jobs_finished_total"
    for (model, status), n in outcomes.items():
        assert total(done, finished, model=model, status=status) == n, (model, status)
    assert total(done, finished) == sum(plan.values())
    fallback = {"model": "fallback", "kind": "image", "provider": "sandbox"}
    assert value(done, finished, **fallback, status="COMPLETED") == 2
    # each failing route ran twice per job (max_route_attempts=2): one retry per job
    assert value(done, "backserv_retries_total", provider="sandbox", route="sandbox:upscale") == 2
    assert value(done, "backserv_retries_total", provider="sandbox", route="sandbox:video") == 2
    assert total(done, "backserv_fallbacks_total") == 2
    assert value(done, "backserv_fallbacks_total", model="fallback", route="sandbox:image") == 2
    latency = "backserv_provider_latency_seconds_count"
    assert value(done, latency, provider="sandbox", outcome="succeeded") == 3 + 2
    assert value(done, latency, provider="sandbox", outcome="failed") == 2 * 2 + 2 * 2
    # every job but the two cancelled in the queue was claimed once
    assert value(done, "backserv_queue_time_seconds_count", provider="sandbox") == 8
    assert value(done, "backserv_inflight_jobs", provider="sandbox") == 0
    assert value(done, "backserv_queue_depth", provider="sandbox") == 0
    assert value(done, "backserv_jobs_processing", provider="sandbox") == 0
    assert value(done, "backserv_provider_concurrency_limit", provider="sandbox") == 64


async def test_inflight_gauge_counts_running_jobs(
    scripted: tuple[httpx.AsyncClient, Gateway],
) -> None:
    client, gw = scripted
    job_id = await submit(client, "slow")
    burst = asyncio.create_task(gw.scheduler.run_until_idle(timeout=20))
    await until_processing(client, job_id)

    running_now = await scrape(client)
    assert value(running_now, "backserv_inflight_jobs", provider="sandbox") == 1
    assert value(running_now, "backserv_jobs_processing", provider="sandbox") == 1

    await client.post(f"/v1/jobs/{job_id}/cancel", headers=AUTH_A)
    await burst
    assert value(await scrape(client), "backserv_inflight_jobs", provider="sandbox") == 0


async def test_an_idempotent_replay_is_not_counted_as_a_submit(
    scripted: tuple[httpx.AsyncClient, Gateway],
) -> None:
    client, _gw = scripted
    first = await submit(client, "good", **{"Idempotency-Key": "once"})
    assert await submit(client, "good", **{"Idempotency-Key": "once"}) == first

    samples = await scrape(client)
    assert total(samples, "backserv_jobs_submitted_total") == 1


async def test_breaker_state_gauge_follows_the_breaker(
    scripted: tuple[httpx.AsyncClient, Gateway],
) -> None:
    client, gw = scripted
    name = "sandbox:image"
    assert value(await scrape(client), "backserv_breaker_state", route=name) == 0
    breaker = gw.breakers.get(name)
    for _ in range(gw.settings.breaker_failure_threshold):
        breaker.record(ok=False)
    assert value(await scrape(client), "backserv_breaker_state", route=name) == 2
    # every catalog route has a series; the others stay closed
    assert value(await scrape(client), "backserv_breaker_state", route="sandbox:video") == 0

    assert breaker.allow(now=time.monotonic() + gw.settings.breaker_cooldown_seconds + 1)
    assert value(await scrape(client), "backserv_breaker_state", route=name) == 1
    breaker.record(ok=True)
    assert value(await scrape(client), "backserv_breaker_state", route=name) == 0


async def test_http_latency_is_labelled_by_route_template(
    scripted: tuple[httpx.AsyncClient, Gateway],
) -> None:
    client, _gw = scripted
    job_id = await submit(client, "good")
    for _ in range(3):
        assert (await client.get(f"/v1/jobs/{job_id}", headers=AUTH_A)).status_code == 200
    assert (await client.get("/v1/jobs/job-nope", headers=AUTH_A)).status_code == 404
    await client.get("/api/v1/tasks/some-task-id")  # a route of the mounted Tasks API
    await client.get("/no/such/path")

    resp = await client.get("/metrics")
    samples = await scrape(client)
    count = "backserv_http_request_duration_seconds_count"
    poll = {"method": "GET", "route": "/v1/jobs/{job_id}"}
    assert value(samples, count, **poll, status="200") == 3
    assert value(samples, count, **poll, status="404") == 1
    assert value(samples, count, method="POST", route="/v1/jobs/images", status="202") == 1
    assert total(samples, count, route="/api/v1/tasks/{task_id}") == 1
    assert value(samples, count, method="GET", route="unmatched", status="404") == 1
    assert job_id not in resp.text and "job-nope" not in resp.text
    assert "some-task-id" not in resp.text and "/no/such/path" not in resp.text


async def test_metrics_content_type_is_prometheus_text_or_openmetrics(
    scripted: tuple[httpx.AsyncClient, Gateway],
) -> None:
    client, _gw = scripted
    resp = await client.get("/metrics")
    assert resp.headers["content-type"].startswith("text/plain; version=")
    assert "# TYPE backserv_jobs_submitted_total counter" in resp.text

    resp = await client.get("/metrics", headers={"Accept": "application/openmetrics-text"})
    assert resp.headers["content-type"].startswith("application/openmetrics-text")
    assert resp.text.endswith("# EOF\n")


async def test_metrics_token_is_asked_for_when_set(tmp_path: Path) -> None:
    settings = make_settings(tmp_path, metrics_token="s3cret-token")
    async with running(settings, start_scheduler=False) as (client, _gw):
        assert (await client.get("/metrics")).status_code == 401
        wrong = {"Authorization": "Bearer nope"}
        assert (await client.get("/metrics", headers=wrong)).status_code == 401
        right = {"Authorization": "Bearer s3cret-token"}
        assert (await client.get("/metrics", headers=right)).status_code == 200


async def test_metrics_can_be_turned_off(tmp_path: Path) -> None:
    settings = make_settings(tmp_path, metrics_enabled=False)
    async with running(settings, start_scheduler=False) as (client, gw):
        assert gw.metrics is None
        assert (await client.get("/metrics")).status_code == 404
        assert (await client.get("/healthz")).status_code == 200


async def test_two_apps_in_one_process_keep_separate_registries(tmp_path: Path) -> None:
    catalog: Catalog = SCRIPTED
    async with (
        running(make_settings(tmp_path / "a"), catalog=catalog, start_scheduler=False) as (a, _),
        running(make_settings(tmp_path / "b"), catalog=catalog, start_scheduler=False) as (b, _),
    ):
        await submit(a, "good")
        assert total(await scrape(a), "backserv_jobs_submitted_total") == 1
        assert total(await scrape(b), "backserv_jobs_submitted_total") == 0


async def test_queue_depth_is_cached_between_scrapes(
    scripted: tuple[httpx.AsyncClient, Gateway],
) -> None:
    client, gw = scripted
    assert gw.metrics is not None and gw.metrics.state is not None
    gw.metrics.state.count_ttl = 60.0
    assert value(await scrape(client), "backserv_queue_depth", provider="sandbox") == 0
    await submit(client, "good")
    assert value(await scrape(client), "backserv_queue_depth", provider="sandbox") == 0
    gw.metrics.state.count_ttl = 0.0
    assert value(await scrape(client), "backserv_queue_depth", provider="sandbox") == 1


async def test_a_failed_count_keeps_the_last_values(
    scripted: tuple[httpx.AsyncClient, Gateway],
) -> None:
    client, gw = scripted
    await submit(client, "good")
    assert value(await scrape(client), "backserv_queue_depth", provider="sandbox") == 1
    await gw.store.close()  # every count now fails

    assert value(await scrape(client), "backserv_queue_depth", provider="sandbox") == 1


# -- the edge middleware's latency, on its own ----------------------------------------------


async def test_an_exception_escaping_the_app_is_counted_as_500() -> None:
    async def boom(request: Any) -> Any:
        raise RuntimeError("boom")

    metrics = Metrics()
    inner = Starlette(routes=[Route("/boom/{n}", boom)])
    app = RequestIdMiddleware(inner, HttpLatency(metrics.http_latency))
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
        assert (await client.get("/boom/1")).status_code == 500
    labels = {"method": "GET", "route": "/boom/{n}", "status": "500"}
    count = metrics.registry.get_sample_value(
        "backserv_http_request_duration_seconds_count", labels
    )
    assert count == 1


def test_route_template_of_an_unrouted_scope_is_unmatched() -> None:
    assert route_template({"type": "http", "path": "/x"}, "") == "unmatched"


async def test_the_event_loop_lag_and_the_process_cpu_are_exported(tmp_path: Path) -> None:
    async with running(make_settings(tmp_path)) as (client, _gw):
        await asyncio.sleep(0.6)  # two or more of the monitor's 0.25 s timers
        text = (await client.get("/metrics")).text

    count = next(
        line
        for line in text.splitlines()
        if line.startswith("backserv_event_loop_lag_seconds_count")
    )
    assert float(count.split()[-1]) >= 1, count
    assert "process_cpu_seconds_total" in text


async def test_the_lag_buckets_tell_a_p99_under_50_ms_to_within_a_step_of_half(
    tmp_path: Path,
) -> None:
    """Between 5 and 100 ms each bucket bound is at most 1.5 times the one below, and 50 ms
    (the target's) is one of them."""
    async with running(make_settings(tmp_path), start_scheduler=False) as (client, _gw):
        text = (await client.get("/metrics")).text

    bounds = sorted(
        float(line.split('le="', 1)[1].split('"', 1)[0])
        for line in text.splitlines()
        if line.startswith("backserv_event_loop_lag_seconds_bucket")
    )
    middle = [b for b in bounds if 0.005 <= b <= 0.1]
    assert 0.05 in middle, bounds
    assert all(high <= 1.5 * low for low, high in itertools.pairwise(middle)), bounds


async def test_spend_is_counted_by_model_and_provider(tmp_path: Path) -> None:
    settings = make_settings(tmp_path, sandbox_latency=0.0)
    async with running(settings, catalog=priced_catalog()) as (client, _gw):
        for _ in range(3):
            body = {"model": "priced", "prompt": "a fox", "width": 64, "height": 64}
            resp = await client.post("/v1/jobs/images", json=body, headers=AUTH_A)
            await wait_for(client, resp.json()["id"])
        samples = await scrape(client)

    labels = {"model": "priced", "provider": "sandbox", "currency": "USD"}
    assert value(samples, "backserv_spend_total", **labels) == pytest.approx(1.2)
