"""Cross-key access on every face: key B can do nothing with key A's jobs, and cannot tell
them from jobs that do not exist.

A's job is created through each face in turn (the Jobs API's two POSTs, the OpenAI images
endpoint, the Back.Serv task API, the Tasks API with a JWT whose ``sub`` is A's key id), both
while it waits and once it has finished. Then every route that takes a job id is tried as B:
the Jobs API (read, long-poll, cancel, the SSE stream, a listing cursor), the Back.Serv task
API (query, cancel) and the Tasks API (read, PUT, cancel, cleanup, DELETE, and the generation
routes, with a JWT whose ``sub`` is B's key id). Each answer must be exactly the answer for a
job id that does not exist (no existence oracle), and A's job must come out untouched: still
there, not cancelled, not reordered, its result file still served.

Also here: B's own lists never show A's job; a result URL of B's re-pointed at A's job is
refused, over HTTP and when fed back as a job's input; in the Back.Serv task API's ``none``
auth mode the trusted network's tickets and a key's jobs stay apart; webhook deliveries of
A's jobs are signed with A's secret, never B's, whatever B does to its own.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest

from gateway.api.tasks.ids import task_id_of
from gateway.app import Gateway
from gateway.auth import hash_key, key_id_for
from gateway.jobs import new_job_id
from tests.api.support import data_url, download, png, running
from tests.api.tasks_support import SECRET, token
from tests.conftest import AUTH_A, AUTH_B, KEY_A, KEY_B, make_settings, wait_for
from tests.webhooks.support import eventually, receiving, verify_standard_webhook

OWNER_A = key_id_for(hash_key(KEY_A))
OWNER_B = key_id_for(hash_key(KEY_B))


def jwt_for(sub: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token({'sub': sub, 'exp': time.time() + 600})}"}


JWT_A = jwt_for(OWNER_A)  # a Tasks API token that acts for key A (README: "Tokens")
JWT_B = jwt_for(OWNER_B)
SMALL_PNG = data_url(png(16, 16))


# -- A's job, made through each face ----------------------------------------------------------

Create = Callable[[httpx.AsyncClient], Awaitable[str]]


def created(resp: httpx.Response, *, status: int = 202) -> dict[str, Any]:
    assert resp.status_code == status, resp.text
    body: dict[str, Any] = resp.json()
    return body


async def via_jobs_images(client: httpx.AsyncClient) -> str:
    body = {"model": "sandbox-image", "prompt": "a fox", "width": 64, "height": 64}
    return str(created(await client.post("/v1/jobs/images", json=body, headers=AUTH_A))["id"])


async def via_jobs_generic(client: httpx.AsyncClient) -> str:
    body = {"model": "sandbox-upscale", "input": {"image_url": SMALL_PNG, "scale_factor": 2}}
    return str(created(await client.post("/v1/jobs", json=body, headers=AUTH_A))["id"])


async def via_openai(client: httpx.AsyncClient) -> str:
    body = {"model": "sandbox-image", "prompt": "a fox", "size": "64x64"}
    resp = await client.post("/v1/images/generations", json=body, headers=AUTH_A)
    assert resp.status_code in (200, 504), resp.text  # 504: still running, with its job id
    return str(resp.headers.get("x-backserv-job-id") or resp.json()["error"]["job_id"])


async def via_backserv(client: httpx.AsyncClient) -> str:
    body = {
        "task_type": "image_creation",
        "task_params": {"prompt": "a fox", "width": 64, "height": 64},
        "user_id": "u1",
    }
    resp = await client.post("/submit_task", json=body, headers=AUTH_A)
    return str(created(resp)["ticket_id"])


async def via_tasks(client: httpx.AsyncClient) -> str:
    body = {
        "task_type": "GENERATION",
        "prompt": "a fox",
        "width": 64,
        "height": 64,
        "origin_instance": "cross-key",
    }
    resp = await client.post("/api/v1/tasks/", json=body, headers=JWT_A)
    return str(created(resp, status=200)["service_task_id"])


FACES: dict[str, Create] = {
    "jobs-images": via_jobs_images,
    "jobs-generic": via_jobs_generic,
    "openai": via_openai,
    "backserv": via_backserv,
    "tasks": via_tasks,
}


# -- what B tries ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Probe:
    method: str
    path: str  # {job} is the job id, {task} its Tasks API id
    headers: dict[str, str] = field(default_factory=lambda: AUTH_B)
    json: dict[str, Any] | None = None

    async def send(self, client: httpx.AsyncClient, job_id: str) -> httpx.Response:
        path = self.path.format(job=job_id, task=task_id_of(job_id))
        return await client.request(self.method, path, headers=self.headers, json=self.json)


PROBES = {
    "jobs.get": Probe("GET", "/v1/jobs/{job}"),
    "jobs.long-poll": Probe("GET", "/v1/jobs/{job}?wait=1"),
    "jobs.cancel": Probe("POST", "/v1/jobs/{job}/cancel"),
    "jobs.events": Probe("GET", "/v1/jobs/{job}/events"),
    "jobs.list-after": Probe("GET", "/v1/jobs?after={job}"),
    "backserv.query": Probe("GET", "/query_task/{job}"),
    "backserv.cancel": Probe("POST", "/cancel_task/{job}"),
    "tasks.get": Probe("GET", "/api/v1/tasks/{task}", JWT_B),
    "tasks.put-cancel": Probe("PUT", "/api/v1/tasks/{task}", JWT_B, {"status": "CANCELLED"}),
    "tasks.put-priority": Probe("PUT", "/api/v1/tasks/{task}", JWT_B, {"priority": 50}),
    "tasks.cancel": Probe("POST", "/api/v1/tasks/{task}/cancel", JWT_B),
    "tasks.cleanup": Probe("POST", "/api/v1/tasks/{task}/cleanup", JWT_B),
    "tasks.delete": Probe("DELETE", "/api/v1/tasks/{task}", JWT_B),
    "tasks.generation.get": Probe("GET", "/api/v1/tasks/generation/{task}", JWT_B),
    "tasks.generation.put": Probe(
        "PUT", "/api/v1/tasks/generation/{task}", JWT_B, {"status": "CANCELLED"}
    ),
    "tasks.generation.cancel": Probe("POST", "/api/v1/tasks/generation/{task}/cancel", JWT_B),
}


def normalised(resp: httpx.Response, job_id: str) -> tuple[int, str, str]:
    """Status, media type and body, with the ids asked for replaced by a placeholder."""
    text = resp.text.replace(job_id, "<id>").replace(task_id_of(job_id), "<id>")
    return resp.status_code, resp.headers.get("content-type", ""), text


@contextlib.asynccontextmanager
async def gateway(
    tmp_path: Path, *, scheduler: bool = True, **overrides: Any
) -> AsyncIterator[tuple[httpx.AsyncClient, Gateway]]:
    values: dict[str, Any] = {
        "tasks_jwt_secret": SECRET,
        "sandbox_latency": 0.02,
        "sync_wait_seconds": 10.0 if scheduler else 0.2,
    }
    settings = make_settings(tmp_path, **(values | overrides))
    async with running(settings, start_scheduler=scheduler) as (client, gw):
        yield client, gw


async def as_a_sees_it(client: httpx.AsyncClient, job_id: str) -> dict[str, Any]:
    """What A can observe of its job: on the Jobs API, on the Tasks API, and its files."""
    job = await client.get(f"/v1/jobs/{job_id}", headers=AUTH_A)
    assert job.status_code == 200, job.text
    body = job.json()
    task = await client.get(f"/api/v1/tasks/{task_id_of(job_id)}", headers=JWT_A)
    assert task.status_code == 200, task.text
    urls = [f["url"] for f in (body.get("result") or {}).get("images", [])]
    urls += [f["url"] for f in (body.get("result") or {}).get("videos", [])]
    files = [(await download(client, url)).status_code for url in urls]
    return {
        "status": body["status"],
        "priority": body["priority"],
        "urls": urls,
        "files": files,
        "task": (task.json()["status"], task.json()["priority"], task.json()["is_deleted"]),
    }


# -- every face, every route that takes an id --------------------------------------------------


@pytest.mark.parametrize("finished", [False, True], ids=["queued", "finished"])
@pytest.mark.parametrize("face", sorted(FACES))
async def test_key_b_gets_the_missing_job_answer_for_key_as_job_and_changes_nothing(
    tmp_path: Path, face: str, finished: bool
) -> None:
    async with gateway(tmp_path, scheduler=finished) as (client, _gw):
        job_id = await FACES[face](client)
        if finished:
            assert (await wait_for(client, job_id))["status"] == "COMPLETED"
        before = await as_a_sees_it(client, job_id)
        assert before["status"] == ("COMPLETED" if finished else "QUEUED")
        assert all(code == 200 for code in before["files"]) and len(before["files"]) == finished
        missing = new_job_id()

        for name, probe in PROBES.items():
            theirs = await probe.send(client, job_id)
            nobody = await probe.send(client, missing)

            assert theirs.status_code in (400, 404), (name, theirs.text)
            assert normalised(theirs, job_id) == normalised(nobody, missing), name

        assert await as_a_sees_it(client, job_id) == before


async def test_key_b_lists_none_of_key_as_jobs(tmp_path: Path) -> None:
    async with gateway(tmp_path, scheduler=False) as (client, _gw):
        theirs = {await create(client) for create in FACES.values()}
        body = {"model": "sandbox-image", "prompt": "mine", "width": 64, "height": 64}
        mine = (await client.post("/v1/jobs/images", json=body, headers=AUTH_B)).json()["id"]
        task = {"task_type": "GENERATION", "prompt": "mine", "origin_instance": "b"}
        my_task = (await client.post("/api/v1/tasks/", json=task, headers=JWT_B)).json()

        async def ids(path: str, headers: dict[str, str]) -> set[str]:
            resp = await client.get(path, headers=headers)
            assert resp.status_code == 200, resp.text
            data = resp.json()
            items = data["jobs"] if isinstance(data, dict) else data
            return {item.get("service_task_id") or item["id"] for item in items}

        assert await ids("/v1/jobs", AUTH_A) == theirs
        assert await ids("/v1/jobs", AUTH_B) == {mine, my_task["service_task_id"]}
        assert await ids("/v1/jobs?user_id=u1", AUTH_B) == set()
        assert await ids("/api/v1/tasks/", JWT_B) == {mine, my_task["service_task_id"]}
        assert await ids("/api/v1/tasks/generation", JWT_B) == {
            mine,
            my_task["service_task_id"],
        }
        assert await ids("/api/v1/tasks/?origin_instance=cross-key", JWT_B) == set()
        # asking for A's jobs by owner needs the admin scope
        refused = await client.get(f"/v1/jobs?owner={OWNER_A}", headers=AUTH_B)
        assert refused.status_code == 403, refused.text


# -- result files ------------------------------------------------------------------------------


def repoint(url: str, job_id: str) -> str:
    """``url`` (a signed result URL) with its job id replaced: the signature is unchanged."""
    parts = urlsplit(url)
    _, files, _old, name = parts.path.split("/")
    return f"{parts.scheme}://{parts.netloc}/{files}/{job_id}/{name}?{parts.query}"


async def test_key_bs_signed_url_re_pointed_at_key_as_file_is_refused_as_for_any_job(
    tmp_path: Path,
) -> None:
    async with gateway(tmp_path) as (client, _gw):
        a_job = await wait_for(client, await via_jobs_images(client))
        b_job = await wait_for(
            client,
            (
                await client.post(
                    "/v1/jobs/images",
                    json={"model": "sandbox-image", "prompt": "b", "width": 64, "height": 64},
                    headers=AUTH_B,
                )
            ).json()["id"],
            headers=AUTH_B,
        )
        b_url = b_job["result"]["url"]
        assert (await download(client, b_url)).status_code == 200

        forged = await download(client, repoint(b_url, a_job["id"]))
        missing_id = new_job_id()
        nobody = await download(client, repoint(b_url, missing_id))

        assert forged.status_code == 403, forged.text
        assert forged.json()["error"]["code"] == "bad_signature"
        assert normalised(forged, a_job["id"]) == normalised(nobody, missing_id)
        assert (await download(client, a_job["result"]["url"])).status_code == 200


async def test_a_re_pointed_result_url_given_as_input_does_not_read_key_as_file(
    tmp_path: Path,
) -> None:
    """The gateway reads its own result URLs from disk when they come back as a job's input;
    it checks their signature there as the files route does."""
    async with gateway(tmp_path) as (client, _gw):
        a_job = await wait_for(client, await via_jobs_images(client))
        body = {"model": "sandbox-image", "prompt": "b", "width": 64, "height": 64}
        b_first = (await client.post("/v1/jobs/images", json=body, headers=AUTH_B)).json()
        b_url = (await wait_for(client, b_first["id"], headers=AUTH_B))["result"]["url"]

        async def upscale_as_b(image_url: str) -> dict[str, Any]:
            body = {"model": "sandbox-upscale", "input": {"image_url": image_url}}
            resp = await client.post("/v1/jobs", json=body, headers=AUTH_B)
            assert resp.status_code == 202, resp.text
            return await wait_for(client, resp.json()["id"], headers=AUTH_B)

        own = await upscale_as_b(b_url)  # the same path works with a genuine URL
        stolen = await upscale_as_b(repoint(b_url, a_job["id"]))

    assert own["status"] == "COMPLETED", own
    assert stolen["status"] == "FAILED", stolen
    assert stolen["error"]["code"] == "invalid_input", stolen["error"]
    assert "result" not in stolen


# -- the Back.Serv task API without keys -------------------------------------------------------


async def test_the_trusted_networks_tickets_and_a_keys_jobs_stay_apart(tmp_path: Path) -> None:
    """``BACKSERV_SUBMIT_TASK_AUTH=none``: every request of that face acts as one owner,
    which is not any key: it cannot reach a key's jobs, nor a key the network's tickets."""
    async with gateway(tmp_path, scheduler=False, submit_task_auth="none") as (client, _gw):
        keyed = await via_jobs_images(client)
        body = {"task_type": "image_creation", "task_params": {"prompt": "x"}, "user_id": "u"}
        resp = await client.post("/submit_task", json=body)  # no Authorization at all
        assert resp.status_code == 202, resp.text
        ticket = resp.json()["ticket_id"]
        missing = new_job_id()

        for probe in (
            Probe("GET", "/query_task/{job}", {}),
            Probe("POST", "/cancel_task/{job}", {}),
        ):
            theirs, nobody = await probe.send(client, keyed), await probe.send(client, missing)
            assert theirs.status_code == 404, theirs.text
            assert normalised(theirs, keyed) == normalised(nobody, missing)
        for headers in (AUTH_A, AUTH_B):
            resp = await client.get(f"/v1/jobs/{ticket}", headers=headers)
            assert resp.status_code == 404, resp.text
        assert (await client.get(f"/query_task/{ticket}")).json()["status"] == "Queueing"
        assert (await client.get(f"/v1/jobs/{keyed}", headers=AUTH_A)).json()["status"] == "QUEUED"


# -- webhook secrets ---------------------------------------------------------------------------


async def test_key_as_webhooks_are_signed_with_key_as_secret_never_key_bs(tmp_path: Path) -> None:
    async with (
        receiving() as receiver,
        gateway(tmp_path, webhook_allow="127.0.0.1") as (
            client,
            _gw,
        ),
    ):
        secret_a = (await client.get("/v1/webhook_secret", headers=AUTH_A)).json()["secret"]
        secret_b = (await client.get("/v1/webhook_secret", headers=AUTH_B)).json()["secret"]
        rotated_b = (await client.post("/v1/webhook_secret/rotate", headers=AUTH_B)).json()
        body = {
            "model": "sandbox-image",
            "prompt": "a fox",
            "width": 64,
            "height": 64,
            "webhook_url": receiver.url,
        }
        job = (await client.post("/v1/jobs/images", json=body, headers=AUTH_A)).json()
        await wait_for(client, job["id"])
        await receiver.wait_until(1)
        view = await eventually(lambda: _delivered(client, job["id"]))
        # B's reading and rotating left A's secret as it was
        after = (await client.get("/v1/webhook_secret", headers=AUTH_A)).json()["secret"]

    [delivery] = receiver.received
    assert delivery.payload["data"]["id"] == job["id"]
    assert verify_standard_webhook(secret_a, delivery.headers, delivery.body)
    for other in (secret_b, rotated_b["secret"]):
        assert not verify_standard_webhook(other, delivery.headers, delivery.body)
    assert after == secret_a and len({secret_a, secret_b, rotated_b["secret"]}) == 3
    assert view["url"] == receiver.url


async def _delivered(client: httpx.AsyncClient, job_id: str) -> dict[str, Any] | None:
    hook = (await client.get(f"/v1/jobs/{job_id}", headers=AUTH_A)).json().get("webhook") or {}
    done = any(d["status"] == "delivered" for d in hook.get("deliveries", []))
    return hook if done else None
