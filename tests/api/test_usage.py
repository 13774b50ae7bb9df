"""Spend at the edge: budgets refusing submits (OpenAI's exhausted-quota answer), ``usage`` on
job objects, and ``GET /v1/usage`` (JSON and CSV, own key and admin)."""

from __future__ import annotations

import asyncio
import csv
import io
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from gateway.app import Gateway
from gateway.auth import new_key_record
from gateway.catalog import Catalog, parse_catalog
from providers.registry import KNOWN_PROVIDERS
from tests.api.support import assert_error, running
from tests.conftest import make_settings, wait_for

#: a flat $0.40 a run, so a $1.00 budget holds two jobs and refuses a third
CATALOG = {
    "models": [
        {
            "id": "priced",
            "kind": "image",
            "routes": [
                {"provider": "sandbox", "target": "image", "price": {"amount": 0.4, "unit": "run"}}
            ],
        },
        {
            "id": "free-for-all",
            "kind": "image",
            "routes": [{"provider": "sandbox", "target": "video"}],
        },
    ]
}
BODY = {"model": "priced", "prompt": "a fox", "width": 64, "height": 64}


def catalog() -> Catalog:
    return parse_catalog(CATALOG, KNOWN_PROVIDERS, source="test")


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


class Rig:
    def __init__(self, client: httpx.AsyncClient, gw: Gateway, admin: dict[str, str]) -> None:
        self.client, self.gw, self.admin = client, gw, admin

    async def key(self, **budgets: Any) -> dict[str, str]:
        resp = await self.client.post(
            "/v1/keys", json={"name": "spender", **budgets}, headers=self.admin
        )
        assert resp.status_code == 201, resp.text
        return bearer(resp.json()["key"])

    async def submit(self, headers: dict[str, str], **body: Any) -> httpx.Response:
        return await self.client.post("/v1/jobs/images", json={**BODY, **body}, headers=headers)


@pytest.fixture
async def rig(tmp_path: Path) -> AsyncIterator[Rig]:
    settings = make_settings(tmp_path, rate_limit_per_second=0, sandbox_latency=0.0)
    async with running(settings, catalog=catalog()) as (client, gw):
        key, record = new_key_record("ops", scopes="admin")
        await gw.store.create_key(record)
        yield Rig(client, gw, bearer(key))


async def test_a_submit_that_would_cross_the_budget_gets_openais_quota_answer(rig: Rig) -> None:
    spender = await rig.key(budget_total=1.0)
    first = await rig.submit(spender)
    second = await rig.submit(spender)
    assert first.status_code == second.status_code == 202

    third = await rig.submit(spender)

    assert_error(third, 429, code="insufficient_quota", error_type="insufficient_quota")
    assert third.json()["error"]["type"] == "insufficient_quota"
    assert "total budget of 1 USD" in third.json()["error"]["message"]
    listed = await rig.client.get("/v1/jobs", headers=spender)
    assert len(listed.json()["jobs"]) == 2  # nothing was stored for the refused one
    for job_id in (first.json()["id"], second.json()["id"]):  # accepted jobs run to the end
        done = await wait_for(rig.client, job_id, spender)
        assert done["status"] == "COMPLETED"
        assert done["usage"] == {"cost": 0.4, "currency": "USD", "priced": True, "estimate": 0.4}
        assert [a["cost"] for a in done["attempts"]] == [0.4]


async def test_a_key_with_a_budget_cannot_run_an_unpriced_model(rig: Rig) -> None:
    spender = await rig.key(budget_daily=5)

    resp = await rig.submit(spender, model="free-for-all")

    assert_error(resp, 403, param="model", code="model_unpriced", error_type="permission_error")
    assert resp.json()["error"]["param"] == "model"


async def test_an_unpriced_job_says_so_rather_than_costing_nothing(rig: Rig) -> None:
    spender = await rig.key()
    job_id = (await rig.submit(spender, model="free-for-all")).json()["id"]

    done = await wait_for(rig.client, job_id, spender)

    assert done["usage"] == {"cost": None, "currency": "USD", "priced": False, "estimate": None}


async def test_many_submits_racing_for_the_last_dollar_never_reserve_past_it(rig: Rig) -> None:
    spender = await rig.key(budget_daily=2.0)  # five jobs of $0.40

    answers = await asyncio.gather(*(rig.submit(spender) for _ in range(20)))

    codes = sorted(a.status_code for a in answers)
    assert codes == [202] * 5 + [429] * 15
    usage = await rig.client.get("/v1/usage", headers=spender)
    assert usage.json()["budgets"]["daily"] == {"budget": 2.0, "spent": 2.0}


async def test_a_budget_can_be_raised_and_removed_through_the_keys_api(rig: Rig) -> None:
    resp = await rig.client.post(
        "/v1/keys", json={"name": "s", "budget_monthly": 0.5}, headers=rig.admin
    )
    key_id, spender = resp.json()["id"], bearer(resp.json()["key"])
    assert resp.json()["budgets"]["monthly"] == 0.5
    assert (await rig.submit(spender)).status_code == 202
    assert (await rig.submit(spender)).status_code == 429

    patched = await rig.client.patch(
        f"/v1/keys/{key_id}", json={"budget_monthly": None}, headers=rig.admin
    )

    assert patched.json()["budgets"] == {
        "daily": None,
        "monthly": None,
        "total": None,
        "currency": "USD",
    }
    assert (await rig.submit(spender)).status_code == 202


async def test_a_bad_budget_names_the_field(rig: Rig) -> None:
    resp = await rig.client.post(
        "/v1/keys", json={"name": "s", "budget_daily": -1}, headers=rig.admin
    )

    assert_error(resp, 400, param="budget_daily", code="out_of_range")


async def test_usage_sums_equal_the_sum_of_the_jobs_costs(rig: Rig) -> None:
    spender = await rig.key()
    ids = [(await rig.submit(spender, num_images=n)).json()["id"] for n in (1, 2, 3)]
    jobs = [await wait_for(rig.client, job_id, spender) for job_id in ids]

    resp = await rig.client.get("/v1/usage?group_by=model,provider", headers=spender)

    body = resp.json()
    assert resp.status_code == 200 and body["object"] == "usage"
    assert body["total"] == pytest.approx(sum(j["usage"]["cost"] for j in jobs)) == 1.2
    assert body["data"] == [{"model": "priced", "provider": "sandbox", "cost": 1.2, "attempts": 3}]


async def test_usage_is_the_keys_own_and_an_admin_sees_every_key(rig: Rig) -> None:
    alice, bob = await rig.key(), await rig.key()
    for who in (alice, bob, bob):
        await wait_for(rig.client, (await rig.submit(who)).json()["id"], who)

    mine = await rig.client.get("/v1/usage", headers=alice)
    every = await rig.client.get("/v1/usage?group_by=key", headers=rig.admin)
    other = await rig.client.get("/v1/usage?key_id=key_0000000000000000", headers=alice)

    assert mine.json()["total"] == 0.4
    assert sorted(line["cost"] for line in every.json()["data"]) == [0.4, 0.8]
    assert_error(other, 403, param="key_id", code="admin_required")


async def test_usage_comes_as_csv(rig: Rig) -> None:
    spender = await rig.key()
    await wait_for(rig.client, (await rig.submit(spender)).json()["id"], spender)

    resp = await rig.client.get("/v1/usage?format=csv&group_by=day,model", headers=spender)

    assert resp.headers["content-type"].startswith("text/csv")
    rows = list(csv.reader(io.StringIO(resp.text)))
    assert rows[0] == ["day", "model", "cost", "currency", "attempts"]
    assert rows[1][1:] == ["priced", "0.400000", "USD", "1"]


@pytest.mark.parametrize(
    ("query", "param"),
    [
        ("start=yesterday", "start"),
        ("start=", "start"),
        ("format=", "format"),
        ("end=2025-02-30", "end"),
        ("group_by=colour", "group_by"),
        ("format=xml", "format"),
    ],
)
async def test_a_bad_usage_query_names_the_parameter(rig: Rig, query: str, param: str) -> None:
    resp = await rig.client.get(f"/v1/usage?{query}", headers=rig.admin)

    assert resp.status_code == 400, resp.text
    assert resp.json()["error"]["param"] == param


async def test_a_range_that_ends_before_it_starts_is_empty(rig: Rig) -> None:
    resp = await rig.client.get("/v1/usage?start=2025-03-02&end=2025-03-01", headers=rig.admin)

    assert resp.status_code == 200 and resp.json()["data"] == []


async def test_a_budget_holds_after_a_restart(tmp_path: Path) -> None:
    settings = make_settings(tmp_path, rate_limit_per_second=0, sandbox_latency=0.0)
    async with running(settings, catalog=catalog()) as (client, gw):
        key, record = new_key_record("ops", scopes="admin")
        await gw.store.create_key(record)
        rig = Rig(client, gw, bearer(key))
        spender = await rig.key(budget_total=0.8)
        for _ in range(2):
            job_id = (await rig.submit(spender)).json()["id"]
            await wait_for(client, job_id, spender)

    async with running(settings, catalog=catalog()) as (client, gw):
        rig = Rig(client, gw, {})
        refused = await rig.submit(spender)

    assert_error(refused, 429, code="insufficient_quota")
