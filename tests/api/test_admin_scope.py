"""The ``admin`` scope on the Jobs API: an admin key reads every owner's jobs."""

from __future__ import annotations

from pathlib import Path

from gateway.auth import hash_key, key_id_for, new_key_record
from tests.api.support import running
from tests.conftest import AUTH_A, AUTH_B, KEY_B, make_settings

BODY = {"model": "sandbox-image", "input": {"prompt": "a fox", "width": 64, "height": 64}}


async def test_an_admin_key_sees_every_owners_jobs(tmp_path: Path) -> None:
    async with running(make_settings(tmp_path), start_scheduler=False) as (client, gw):
        admin_key, record = new_key_record("ops", scopes="admin")
        await gw.store.create_key(record)
        plain_key, plain = new_key_record("plain")
        await gw.store.create_key(plain)
        admin = {"Authorization": f"Bearer {admin_key}"}
        plain_auth = {"Authorization": f"Bearer {plain_key}"}

        job_b = (await client.post("/v1/jobs", json=BODY, headers=AUTH_B)).json()
        job_a = (await client.post("/v1/jobs", json=BODY, headers=AUTH_A)).json()

        resp = await client.get(f"/v1/jobs/{job_b['id']}", headers=admin)
        assert resp.status_code == 200, resp.text
        assert resp.json()["id"] == job_b["id"]

        listed = (await client.get("/v1/jobs", headers=admin)).json()["jobs"]
        assert {j["id"] for j in listed} == {job_a["id"], job_b["id"]}

        # ?owner= narrows an admin's list to one owner
        owner_b = key_id_for(hash_key(KEY_B))
        listed = (await client.get(f"/v1/jobs?owner={owner_b}", headers=admin)).json()["jobs"]
        assert [j["id"] for j in listed] == [job_b["id"]]

        # ordinary keys are unchanged: another owner's job is a 404, the list is their own
        for auth in (AUTH_A, plain_auth):
            resp = await client.get(f"/v1/jobs/{job_b['id']}", headers=auth)
            assert resp.status_code == 404, resp.text
        assert (await client.get("/v1/jobs", headers=plain_auth)).json()["jobs"] == []

        # and asking for another owner's list without the scope is a 403 naming it
        resp = await client.get(f"/v1/jobs?owner={owner_b}", headers=AUTH_A)
        assert resp.status_code == 403, resp.text
        assert resp.json()["error"]["code"] == "admin_required"
