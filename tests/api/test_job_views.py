"""The cache of rendered jobs behind ``GET /v1/jobs/{id}`` (gateway/api/job_views.py)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from gateway.api.job_views import JobViews
from gateway.app import Gateway
from tests.api.support import running, submit_image
from tests.conftest import AUTH_A, AUTH_B, make_settings, wait_for


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


# -- the cache on its own ----------------------------------------------------------------


def test_a_read_stores_its_body_and_a_change_drops_it() -> None:
    views = JobViews(ttl=10)
    token = views.reserve("job-1")
    assert views.put("job-1", token, "owner", b"{}")
    view = views.get("job-1")
    assert view is not None and view.body == b"{}" and view.owner == "owner"
    views.changed("job-1")
    assert views.get("job-1") is None


def test_a_read_that_raced_a_change_is_not_stored() -> None:
    views = JobViews(ttl=10)
    token = views.reserve("job-1")
    views.changed("job-1")  # committed while the read was in flight: its row may be older
    assert not views.put("job-1", token, "owner", b'{"status":"QUEUED"}')
    assert views.get("job-1") is None


def test_an_older_read_cannot_overwrite_a_newer_one() -> None:
    views = JobViews(ttl=10)
    first = views.reserve("job-1")
    second = views.reserve("job-1")
    assert views.put("job-1", second, "owner", b"new")
    assert not views.put("job-1", first, "owner", b"old")
    view = views.get("job-1")
    assert view is not None and view.body == b"new"


def test_overlapping_reads_fill_the_cache_with_the_first_to_finish() -> None:
    """Polls arriving while an expired job is read again: the first read back is kept, not
    turned away because a later poll's read had started meanwhile."""
    views = JobViews(ttl=10)
    first = views.reserve("job-1")
    second = views.reserve("job-1")  # the next poll missed too, before the first read ended
    assert views.put("job-1", first, "owner", b"body")
    view = views.get("job-1")
    assert view is not None and view.body == b"body"
    assert not views.put("job-1", second, "owner", b"body")  # one entry, kept once


def test_a_change_turns_away_every_read_in_flight() -> None:
    views = JobViews(ttl=10)
    first = views.reserve("job-1")
    second = views.reserve("job-1")
    views.changed("job-1")
    assert not views.put("job-1", first, "owner", b"old")
    assert not views.put("job-1", second, "owner", b"old")
    assert views.get("job-1") is None


def test_an_entry_expires_after_its_ttl() -> None:
    clock = Clock()
    views = JobViews(ttl=2, clock=clock)
    views.put("job-1", views.reserve("job-1"), "owner", b"{}")
    clock.now += 1.9
    assert views.get("job-1") is not None
    clock.now += 0.2
    assert views.get("job-1") is None
    assert len(views) == 0


def test_the_cache_holds_at_most_its_size() -> None:
    views = JobViews(ttl=10, size=3)
    for n in range(5):
        views.put(f"job-{n}", views.reserve(f"job-{n}"), "owner", b"{}")
    assert len(views) == 3
    assert views.get("job-0") is None and views.get("job-1") is None
    assert views.get("job-4") is not None


def test_a_released_reservation_leaves_nothing_behind() -> None:
    views = JobViews(ttl=10)
    token = views.reserve("job-1")
    views.release("job-1", token)
    assert not views.put("job-1", token, "owner", b"{}")
    assert views._reserved == {}


def test_a_zero_ttl_turns_the_cache_off() -> None:
    views = JobViews(ttl=0)
    assert not views.put("job-1", views.reserve("job-1"), "owner", b"{}")
    assert views.get("job-1") is None


# -- through the API ---------------------------------------------------------------------


@pytest.fixture
async def idle(tmp_path: Path) -> AsyncIterator[tuple[httpx.AsyncClient, Gateway]]:
    """Jobs stay QUEUED; the cache keeps answers for a minute unless a change drops them."""
    settings = make_settings(tmp_path, job_cache_seconds=60)
    async with running(settings, start_scheduler=False) as pair:
        yield pair


async def poll(client: httpx.AsyncClient, job_id: str) -> httpx.Response:
    return await client.get(f"/v1/jobs/{job_id}", headers=AUTH_A)


async def test_a_cancel_shows_at_once_after_a_cached_poll(
    idle: tuple[httpx.AsyncClient, Gateway],
) -> None:
    client, _ = idle
    job = await submit_image(client)
    assert (await poll(client, job["id"])).json()["status"] == "QUEUED"
    assert (await poll(client, job["id"])).json()["status"] == "QUEUED"  # from the cache
    resp = await client.post(f"/v1/jobs/{job['id']}/cancel", headers=AUTH_A)
    assert resp.status_code == 200, resp.text
    assert (await poll(client, job["id"])).json()["status"] == "CANCELLED"


@pytest.mark.parametrize("change", ["priority", "delete"])
async def test_every_kind_of_store_write_drops_the_cached_answer(
    idle: tuple[httpx.AsyncClient, Gateway], change: str
) -> None:
    client, gw = idle
    job = await submit_image(client)
    first = (await poll(client, job["id"])).json()
    if change == "priority":
        assert await gw.store.set_priority(job["id"], 7)
        assert (await poll(client, job["id"])).json()["priority"] == 7
        return
    await client.post(f"/v1/jobs/{job['id']}/cancel", headers=AUTH_A)
    cancelled = (await poll(client, job["id"])).json()
    assert cancelled["status"] == "CANCELLED" != first["status"]
    assert await gw.store.delete_job(job["id"])
    assert (await poll(client, job["id"])).status_code == 404


async def test_purged_files_show_at_once_after_a_cached_poll(tmp_path: Path) -> None:
    settings = make_settings(tmp_path, job_cache_seconds=60)
    async with running(settings) as (client, gw):
        job = await submit_image(client)
        done = await wait_for(client, job["id"])
        assert done["status"] == "COMPLETED", done
        first = (await poll(client, job["id"])).content
        assert (await poll(client, job["id"])).content == first  # the same bytes: cached
        assert await gw.store.mark_files_purged([job["id"]], 1.0) == 1
        assert (await poll(client, job["id"])).json()["result"]["expired"] is True


async def test_another_keys_job_stays_a_404_when_its_answer_is_cached(
    idle: tuple[httpx.AsyncClient, Gateway],
) -> None:
    client, _ = idle
    job = await submit_image(client)
    assert (await poll(client, job["id"])).status_code == 200
    resp = await client.get(f"/v1/jobs/{job['id']}", headers=AUTH_B)
    assert resp.status_code == 404, resp.text
    assert resp.json()["error"]["code"] == "job_not_found"
