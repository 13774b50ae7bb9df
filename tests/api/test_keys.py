"""Key management over the API (gateway/api/keys.py): ``/v1/keys`` for ``admin`` keys."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from gateway.app import Gateway
from gateway.auth import new_key_record
from tests.api.support import assert_error, running
from tests.conftest import AUTH_A, make_settings

BODY = {"model": "sandbox-image", "input": {"prompt": "a fox", "width": 64, "height": 64}}
KEY_FIELDS = {
    "object",
    "id",
    "name",
    "prefix",
    "scopes",
    "status",
    "created_at",
    "revoked_at",
    "limits",
    "budgets",
}


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


@pytest.fixture
async def api(tmp_path: Path) -> AsyncIterator[tuple[httpx.AsyncClient, Gateway, dict[str, str]]]:
    """A client, the gateway, and the headers of a stored admin key (jobs stay QUEUED); the
    default rate limit is off, so a key's own limits are what the tests see."""
    settings = make_settings(tmp_path, rate_limit_per_second=0)
    async with running(settings, start_scheduler=False) as (client, gw):
        key, record = new_key_record("ops", scopes="admin")
        await gw.store.create_key(record)
        yield client, gw, bearer(key)


async def create(client: httpx.AsyncClient, admin: dict[str, str], **body: Any) -> dict[str, Any]:
    resp = await client.post("/v1/keys", json={"name": "ci", **body}, headers=admin)
    assert resp.status_code == 201, resp.text
    created: dict[str, Any] = resp.json()
    return created


async def test_an_admin_creates_a_key_that_is_shown_once_and_works(
    api: tuple[httpx.AsyncClient, Gateway, dict[str, str]],
) -> None:
    client, gw, admin = api
    resp = await client.post("/v1/keys", json={"name": "ci runner"}, headers=admin)

    assert resp.status_code == 201, resp.text
    assert resp.headers["cache-control"] == "no-store"
    created = resp.json()
    assert set(created) == KEY_FIELDS | {"key"}
    assert created["key"].startswith("bsk_") and created["key"][:8] == created["prefix"]
    assert resp.headers["location"] == f"/v1/keys/{created['id']}"
    assert (created["object"], created["name"], created["status"]) == (
        "api_key",
        "ci runner",
        "active",
    )
    assert created["scopes"] == [] and created["revoked_at"] is None
    assert created["limits"] == {
        "rate_limit_per_second": None,
        "rate_limit_burst": None,
        "max_active_jobs": None,
    }
    job = await client.post("/v1/jobs", json=BODY, headers=bearer(created["key"]))
    assert job.status_code == 202, job.text
    assert (await gw.store.get_job(job.json()["id"])).owner == created["id"]  # type: ignore[union-attr]

    # never again: not in the list, not in the key, and no hash either
    listed = await client.get("/v1/keys", headers=admin)
    one = await client.get(f"/v1/keys/{created['id']}", headers=admin)
    for text in (listed.text, one.text):
        assert created["key"] not in text
        assert "hash" not in text
    assert one.json() == {k: v for k, v in created.items() if k != "key"}
    assert listed.json()["object"] == "list" and listed.json()["has_more"] is False
    assert [k["id"] for k in listed.json()["data"]][-1] == created["id"]
    assert all(set(k) == KEY_FIELDS for k in listed.json()["data"])


async def test_an_admin_key_can_create_admin_keys_and_set_limits(
    api: tuple[httpx.AsyncClient, Gateway, dict[str, str]],
) -> None:
    client, _gw, admin = api
    created = await create(
        client,
        admin,
        scopes=["admin"],
        rate_limit_per_second=0.5,
        rate_limit_burst=3,
        max_active_jobs=0,
    )
    assert created["scopes"] == ["admin"]
    assert created["limits"] == {
        "rate_limit_per_second": 0.5,
        "rate_limit_burst": 3,
        "max_active_jobs": 0,
    }
    resp = await client.get("/v1/keys", headers=bearer(created["key"]))  # it is an admin
    assert resp.status_code == 200, resp.text


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("POST", "/v1/keys"),
        ("GET", "/v1/keys"),
        ("GET", "/v1/keys/key_0000000000000000"),
        ("PATCH", "/v1/keys/key_0000000000000000"),
        ("DELETE", "/v1/keys/key_0000000000000000"),
    ],
)
async def test_ordinary_keys_are_refused_with_a_403_and_no_key_with_a_401(
    api: tuple[httpx.AsyncClient, Gateway, dict[str, str]], method: str, path: str
) -> None:
    client, gw, _admin = api
    plain, record = new_key_record("plain")
    await gw.store.create_key(record)
    for headers in (AUTH_A, bearer(plain)):  # a static key, and a stored key without the scope
        resp = await client.request(method, path, json={"name": "x"}, headers=headers)
        error = assert_error(resp, 403, code="admin_required")
        assert "admin" in error["message"]
    assert_error(await client.request(method, path, json={"name": "x"}), 401)


async def test_revocation_takes_effect_at_once_and_is_idempotent(
    api: tuple[httpx.AsyncClient, Gateway, dict[str, str]],
) -> None:
    client, _gw, admin = api
    created = await create(client, admin)
    key = bearer(created["key"])
    assert (await client.get("/v1/jobs", headers=key)).status_code == 200

    resp = await client.delete(f"/v1/keys/{created['id']}", headers=admin)

    assert resp.status_code == 200, resp.text
    assert resp.json()["status"] == "revoked" and resp.json()["revoked_at"] is not None
    assert_error(await client.get("/v1/jobs", headers=key), 401)
    assert_error(await client.post("/v1/jobs", json=BODY, headers=key), 401)
    again = await client.delete(f"/v1/keys/{created['id']}", headers=admin)
    assert again.status_code == 200 and again.json() == resp.json()
    listed = (await client.get("/v1/keys", headers=admin)).json()["data"]
    assert {k["id"]: k["status"] for k in listed}[created["id"]] == "revoked"


@pytest.mark.parametrize("key_id", ["key_0000000000000000", "nonsense", "key_00000000000000zz"])
async def test_an_unknown_key_is_a_404(
    api: tuple[httpx.AsyncClient, Gateway, dict[str, str]], key_id: str
) -> None:
    client, _gw, admin = api
    for method in ("GET", "PATCH", "DELETE"):
        resp = await client.request(method, f"/v1/keys/{key_id}", json={}, headers=admin)
        assert_error(resp, 404, code="key_not_found", param="key_id")


async def test_the_last_admin_key_is_not_revoked_over_the_api(
    api: tuple[httpx.AsyncClient, Gateway, dict[str, str]],
) -> None:
    client, gw, admin = api
    (only_admin,) = [k for k in await gw.store.list_keys() if k.scopes == "admin"]

    resp = await client.delete(f"/v1/keys/{only_admin.id}", headers=admin)

    error = assert_error(resp, 409, code="last_admin_key")
    assert "backserv keys revoke" in error["message"]
    second = await create(client, admin, scopes=["admin"])
    resp = await client.delete(f"/v1/keys/{only_admin.id}", headers=bearer(second["key"]))
    assert resp.status_code == 200, resp.text
    assert_error(await client.get("/v1/keys", headers=admin), 401)


async def test_two_admins_revoking_each_other_at_once_leave_one_admin(
    api: tuple[httpx.AsyncClient, Gateway, dict[str, str]],
) -> None:
    client, gw, admin = api
    first = await create(client, admin, name="first", scopes=["admin"])
    second = await create(client, admin, name="second", scopes=["admin"])
    (ops,) = [k for k in await gw.store.list_keys() if k.name == "ops"]
    assert (await client.delete(f"/v1/keys/{ops.id}", headers=admin)).status_code == 200

    answers = await asyncio.gather(
        client.delete(f"/v1/keys/{second['id']}", headers=bearer(first["key"])),
        client.delete(f"/v1/keys/{first['id']}", headers=bearer(second["key"])),
    )

    assert sorted(r.status_code for r in answers) == [200, 409], [r.text for r in answers]
    (refused,) = [r for r in answers if r.status_code == 409]
    assert_error(refused, 409, code="last_admin_key")
    survivors = [k for k in await gw.store.list_keys() if k.revoked_at is None]
    assert [k.scopes for k in survivors] == ["admin"]


async def test_patch_changes_limits_at_once_and_null_restores_the_default(
    api: tuple[httpx.AsyncClient, Gateway, dict[str, str]],
) -> None:
    client, _gw, admin = api
    created = await create(client, admin)
    key = bearer(created["key"])

    resp = await client.patch(
        f"/v1/keys/{created['id']}",
        json={"rate_limit_per_second": 0.01, "rate_limit_burst": 2, "name": "throttled"},
        headers=admin,
    )

    assert resp.status_code == 200, resp.text
    assert resp.json()["name"] == "throttled"
    assert resp.json()["limits"]["rate_limit_per_second"] == 0.01
    statuses = [
        (await client.post("/v1/jobs", json=BODY, headers=key)).status_code for _ in range(3)
    ]
    assert statuses == [202, 202, 429]

    resp = await client.patch(
        f"/v1/keys/{created['id']}", json={"rate_limit_per_second": None}, headers=admin
    )
    assert resp.json()["limits"]["rate_limit_per_second"] is None
    assert resp.json()["limits"]["rate_limit_burst"] == 2  # untouched
    assert (
        await client.post("/v1/jobs", json=BODY, headers=key)
    ).status_code == 202  # default: off


async def test_a_keys_own_active_jobs_cap_applies(
    api: tuple[httpx.AsyncClient, Gateway, dict[str, str]],
) -> None:
    client, _gw, admin = api
    created = await create(client, admin, max_active_jobs=1)
    key = bearer(created["key"])
    assert (await client.post("/v1/jobs", json=BODY, headers=key)).status_code == 202
    resp = await client.post("/v1/jobs", json=BODY, headers=key)
    error = assert_error(resp, 429, code="too_many_active_jobs")
    assert "the limit is 1 (this key's max_active_jobs)" in error["message"]
    assert int(resp.headers["retry-after"]) >= 1


@pytest.mark.parametrize(
    ("body", "param", "code"),
    [
        ({"rate_limit_per_second": -1}, "rate_limit_per_second", "out_of_range"),
        ({"rate_limit_per_second": "fast"}, "rate_limit_per_second", "invalid_type"),
        ({"rate_limit_per_second": True}, "rate_limit_per_second", "invalid_type"),
        ({"rate_limit_burst": 0}, "rate_limit_burst", "out_of_range"),
        ({"rate_limit_burst": 2.5}, "rate_limit_burst", "invalid_type"),
        ({"max_active_jobs": -3}, "max_active_jobs", "out_of_range"),
        ({"max_active_jobs": 10**12}, "max_active_jobs", "out_of_range"),
        ({"rate_limit_burst": 1e300}, "rate_limit_burst", "out_of_range"),
        ({"name": "a\u0000b"}, "name", "invalid_value"),
        ({"name": ""}, "name", "invalid_value"),
        ({"name": "x" * 201}, "name", "invalid_value"),
        ({"name": 5}, "name", "invalid_type"),
        ({"key_hash": "x"}, "key_hash", "unknown_parameter"),
    ],
)
async def test_bad_changes_are_400s_naming_the_field(
    api: tuple[httpx.AsyncClient, Gateway, dict[str, str]],
    body: dict[str, Any],
    param: str,
    code: str,
) -> None:
    client, _gw, admin = api
    created = await create(client, admin)
    resp = await client.patch(f"/v1/keys/{created['id']}", json=body, headers=admin)
    assert_error(resp, 400, param=param, code=code)
    resp = await client.post("/v1/keys", json={"name": "n", **body}, headers=admin)
    assert_error(resp, 400, param=param)


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({}, "name"),
        ({"name": "n", "scopes": "admin"}, "scopes"),
        ({"name": "n", "scopes": ["root"]}, "scopes"),
        ({"name": "n", "revoked_at": 1}, "revoked_at"),
    ],
)
async def test_bad_creations_are_400s_naming_the_field(
    api: tuple[httpx.AsyncClient, Gateway, dict[str, str]], body: dict[str, Any], param: str
) -> None:
    client, gw, admin = api
    before = len(await gw.store.list_keys())
    resp = await client.post("/v1/keys", json=body, headers=admin)
    assert_error(resp, 400, param=param)
    assert len(await gw.store.list_keys()) == before


async def test_a_revoked_key_cannot_be_changed(
    api: tuple[httpx.AsyncClient, Gateway, dict[str, str]],
) -> None:
    client, _gw, admin = api
    created = await create(client, admin)
    await client.delete(f"/v1/keys/{created['id']}", headers=admin)
    resp = await client.patch(f"/v1/keys/{created['id']}", json={"name": "back"}, headers=admin)
    assert_error(resp, 409, code="key_revoked")
