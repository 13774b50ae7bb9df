"""API keys (gateway/auth.py): Bearer keys, per-key isolation, stored keys, the first key."""

from __future__ import annotations

import asyncio
import re
import time
from pathlib import Path

import httpx
import pytest

from gateway import auth
from gateway.app import Gateway
from gateway.auth import KeyRing, hash_key, new_key_record
from gateway.errors import AuthenticationFailed
from tests.api.support import assert_error, running, submit_image
from tests.conftest import AUTH_A, AUTH_B, KEY_A, make_settings

FIRST_KEY = re.compile(r"bsk_[A-Za-z0-9_-]{20,}")


def database_bytes(folder: Path) -> bytes:
    """Every byte of the SQLite database, its WAL and shared-memory files included."""
    return b"".join(p.read_bytes() for p in sorted(folder.glob("backserv.db*")))


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


async def test_missing_key_is_rejected_with_www_authenticate(client: httpx.AsyncClient) -> None:
    resp = await client.get("/v1/jobs")
    assert_error(resp, 401, error_type="authentication_error")
    assert resp.headers["www-authenticate"].lower().startswith("bearer")


@pytest.mark.parametrize(
    "header",
    [f"Basic {KEY_A}", f"Token {KEY_A}", KEY_A, "Bearer", "Bearer ", f"Bearer{KEY_A}"],
)
async def test_wrong_scheme_is_rejected(client: httpx.AsyncClient, header: str) -> None:
    resp = await client.get("/v1/jobs", headers={"Authorization": header})
    assert_error(resp, 401, error_type="authentication_error")
    assert "www-authenticate" in resp.headers


async def test_unknown_key_is_rejected(client: httpx.AsyncClient) -> None:
    for key in ("not-a-key", "bsk_" + "x" * 43, KEY_A + "x"):
        resp = await client.post(
            "/v1/jobs/images", json={"model": "sandbox-image", "prompt": "x"}, headers=bearer(key)
        )
        assert_error(resp, 401, error_type="authentication_error")


async def test_bearer_scheme_is_case_insensitive(client: httpx.AsyncClient) -> None:
    resp = await client.get("/v1/jobs", headers={"Authorization": f"bearer {KEY_A}"})
    assert resp.status_code == 200, resp.text


async def test_each_key_sees_only_its_own_jobs(tmp_path: Path) -> None:
    async with running(make_settings(tmp_path), start_scheduler=False) as (client, _gw):
        job_a = await submit_image(client, headers=AUTH_A)
        job_b = await submit_image(client, headers=AUTH_B)

        assert_error(await client.get(f"/v1/jobs/{job_a['id']}", headers=AUTH_B), 404)
        assert_error(await client.post(f"/v1/jobs/{job_a['id']}/cancel", headers=AUTH_B), 404)
        listed_b = (await client.get("/v1/jobs", headers=AUTH_B)).json()["jobs"]
        assert [j["id"] for j in listed_b] == [job_b["id"]]

        listed_a = (await client.get("/v1/jobs", headers=AUTH_A)).json()["jobs"]
        assert [j["id"] for j in listed_a] == [job_a["id"]]
        mine = await client.get(f"/v1/jobs/{job_a['id']}", headers=AUTH_A)
        assert mine.json()["status"] == "QUEUED"  # B's cancel did nothing
        # a cursor pointing at another key's job reveals nothing of it
        page = await client.get(f"/v1/jobs?after={job_a['id']}", headers=AUTH_B)
        assert job_a["id"] not in page.text


async def test_stored_key_works_until_revoked(
    client: httpx.AsyncClient, gateway: Gateway, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(auth, "CACHE_SECONDS", 0.0)
    key, record = new_key_record("ci")
    await gateway.store.create_key(record)
    resp = await client.get("/v1/jobs", headers=bearer(key))
    assert resp.status_code == 200, resp.text

    assert await gateway.store.revoke_key(record.id, time.time())
    resp = await client.get("/v1/jobs", headers=bearer(key))
    assert_error(resp, 401, error_type="authentication_error")


async def test_revocation_takes_effect_at_once_on_every_replica(gateway: Gateway) -> None:
    """Two key rings on one store stand for two replicas; neither waits out a cache."""
    key, record = new_key_record("ci")
    await gateway.store.create_key(record)
    replicas = [KeyRing(gateway.store, []), KeyRing(gateway.store, [])]
    for ring in replicas:
        assert (await ring.authenticate(f"Bearer {key}")).key_id == record.id
    assert await gateway.store.revoke_key(record.id, time.time())
    for ring in replicas:
        with pytest.raises(AuthenticationFailed):
            await ring.authenticate(f"Bearer {key}")


async def test_revoked_key_is_rejected_by_a_fresh_key_ring(gateway: Gateway) -> None:
    key, record = new_key_record("ci")
    await gateway.store.create_key(record)
    principal = await KeyRing(gateway.store, []).authenticate(f"Bearer {key}")
    assert principal.key_id == record.id
    assert await gateway.store.revoke_key(record.id, 1.0)
    with pytest.raises(AuthenticationFailed):
        await KeyRing(gateway.store, []).authenticate(f"Bearer {key}")


async def test_stored_keys_do_not_share_jobs(client: httpx.AsyncClient, gateway: Gateway) -> None:
    key_1, record_1 = new_key_record("one")
    key_2, record_2 = new_key_record("two")
    await gateway.store.create_key(record_1)
    await gateway.store.create_key(record_2)
    job = await submit_image(client, headers=bearer(key_1))
    assert_error(await client.get(f"/v1/jobs/{job['id']}", headers=bearer(key_2)), 404)
    assert (await client.get(f"/v1/jobs/{job['id']}", headers=bearer(key_1))).status_code == 200


async def test_first_start_creates_one_key_and_shows_it_once(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    settings = make_settings(tmp_path, api_keys="")
    async with running(settings, start_scheduler=False) as (client, gw):
        shown = FIRST_KEY.findall(capsys.readouterr().err)
        assert len(shown) == 1, shown
        key = shown[0]
        assert (await client.get("/v1/jobs", headers=bearer(key))).status_code == 200
        assert len(await gw.store.list_keys()) == 1

    async with running(settings, start_scheduler=False) as (client, gw):
        assert FIRST_KEY.findall(capsys.readouterr().err) == []
        assert len(await gw.store.list_keys()) == 1
        assert (await client.get("/v1/jobs", headers=bearer(key))).status_code == 200


async def test_no_key_is_created_when_static_keys_are_set(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    async with running(make_settings(tmp_path), start_scheduler=False) as (_client, gw):
        assert await gw.store.list_keys() == []
    assert FIRST_KEY.findall(capsys.readouterr().err) == []


async def test_only_hashes_of_keys_are_stored(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    async with running(make_settings(tmp_path, api_keys=""), start_scheduler=False) as (
        client,
        gw,
    ):
        [first] = FIRST_KEY.findall(capsys.readouterr().err)
        created, record = new_key_record("ci")
        await gw.store.create_key(record)
        for key in (first, created):
            await submit_image(client, headers=bearer(key))
    static = f"{KEY_A}-static"
    async with running(make_settings(tmp_path, api_keys=static), start_scheduler=False) as (
        client,
        _gw,
    ):
        await submit_image(client, headers=bearer(static))
    data = await asyncio.to_thread(database_bytes, tmp_path)
    assert hash_key(created).encode() in data  # the right file: the hash is there
    for key in (first, created, static):
        assert key.encode() not in data, key
