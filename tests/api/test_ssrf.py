"""SSRF attempts end to end: through the API, against the running gateway (scheduler included).

Each attempt aims at a private address: loopback, the cloud metadata address, a DNS name that
resolves to 127.0.0.1, and a redirect from a public address to loopback. Each is tried (a) as
a job's ``webhook_url`` on every face that takes one, and (b) as an input image that a sandbox
route fetches. A refused webhook is a 400 at submit naming ``webhook_url`` and the rule; a
refused input fails the job with an input error naming the field and the rule. Either way no
request reaches the private address: a real server listens there and must receive nothing,
and every connection the gateway makes is recorded (``network``), with anything outside
loopback refused by the test, so a guard that let one through could not go unnoticed.

DNS is the running loop's resolver (``loop.getaddrinfo``, what ``gateway.netguard`` asks),
patched to answer for a few names; "public" names resolve to a public address that the test's
network routes to one of its own loopback servers.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpcore
import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route

from gateway.lean_net import AsyncioBackend
from tests.api.support import png, running
from tests.api.tasks_support import SECRET, auth
from tests.conftest import AUTH_A, make_settings, wait_for
from tests.emulators.server import serve
from tests.webhooks.support import eventually

PUBLIC = "93.184.216.34"  # what the fake DNS answers for the "public" names
RULE = "non-public address"  # words of the guard's refusal (gateway.netguard.check_url)


@dataclass
class Site:
    """A server on loopback that records every request it gets."""

    base_url: str = ""
    seen: list[str] = field(default_factory=list)
    redirect_to: str = ""

    @property
    def port(self) -> int:
        return int(self.base_url.rsplit(":", 1)[1])

    async def _any(self, request: Request) -> Response:
        self.seen.append(f"{request.method} {request.url.path}")
        if request.url.path == "/redirect":
            return RedirectResponse(self.redirect_to, status_code=307)
        return Response(png(8, 8), media_type="image/png")

    def app(self) -> Starlette:
        return Starlette(routes=[Route("/{path:path}", self._any, methods=["GET", "POST"])])


@dataclass
class Network:
    """What the gateway's own HTTP clients connect to (httpcore's ``connect_tcp``)."""

    dns: dict[str, str]
    connections: list[str] = field(default_factory=list)  # the addresses, in order

    def private(self) -> list[str]:
        return [a for a in self.connections if a != PUBLIC]


@pytest.fixture
async def private() -> AsyncIterator[Site]:
    """The target of every attempt: it must never see a request."""
    site = Site()
    async with serve(site.app()) as url:
        site.base_url = url
        yield site


@pytest.fixture
async def public(private: Site) -> AsyncIterator[Site]:
    """Reached at the public address; ``/redirect`` sends the client to ``private``."""
    site = Site(redirect_to=f"{private.base_url}/secret")
    async with serve(site.app()) as url:
        site.base_url = url
        yield site


@pytest.fixture
async def network(monkeypatch: pytest.MonkeyPatch) -> Network:
    net = Network(dns={"images.example": PUBLIC, "hooks.example": PUBLIC})
    net.dns["internal.example"] = "127.0.0.1"
    loop = asyncio.get_running_loop()
    real_getaddrinfo = loop.getaddrinfo

    async def getaddrinfo(host: Any, port: Any, *args: Any, **kwargs: Any) -> Any:
        if host in net.dns:
            return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", (net.dns[host], port))]
        return await real_getaddrinfo(host, port, *args, **kwargs)

    monkeypatch.setattr(loop, "getaddrinfo", getaddrinfo)
    # every network backend the gateway's clients use: httpcore's (the SDKs) and its own
    for backend in (httpcore.AnyIOBackend, AsyncioBackend):
        monkeypatch.setattr(backend, "connect_tcp", _fake_connect(net, backend.connect_tcp))
    return net


def _fake_connect(net: Network, real_connect: Any) -> Any:
    async def connect(
        self: Any, host: str, port: int, *args: Any, **kwargs: Any
    ) -> httpcore.AsyncNetworkStream:
        net.connections.append(host)
        if host == PUBLIC:  # the public address is the test's own "public" server
            host = "127.0.0.1"
        elif not _is_loopback(host):
            raise httpcore.ConnectError(f"the test network does not reach {host}")
        stream: httpcore.AsyncNetworkStream = await real_connect(self, host, port, *args, **kwargs)
        return stream

    return connect


def _is_loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:  # a name: the gateway connects to addresses it checked, never names
        return False


def attempts(private: Site, public: Site) -> dict[str, str]:
    """The URLs of the attempts, by name."""
    return {
        "loopback": f"http://127.0.0.1:{private.port}/secret",
        "metadata": "http://169.254.169.254/latest/meta-data/iam/security-credentials/",
        "dns-to-loopback": f"http://internal.example:{private.port}/secret",
        "redirect-to-loopback": f"http://images.example:{public.port}/redirect",
    }


ATTEMPTS = ["loopback", "metadata", "dns-to-loopback", "redirect-to-loopback"]


# -- (a) webhook targets -----------------------------------------------------------------------

JOB_FACES = {
    "jobs-images": (
        "/v1/jobs/images",
        {"model": "sandbox-image", "prompt": "x", "width": 64, "height": 64},
    ),
    "jobs-generic": ("/v1/jobs", {"model": "sandbox-image", "input": {"prompt": "x"}}),
    "openai": ("/v1/images/generations", {"model": "sandbox-image", "prompt": "x"}),
}


@pytest.mark.parametrize("target", ["loopback", "metadata", "dns-to-loopback"])
@pytest.mark.parametrize("face", [*JOB_FACES, "tasks"])
async def test_a_private_webhook_target_is_refused_at_submit_on_every_face(
    tmp_path: Path, network: Network, private: Site, public: Site, face: str, target: str
) -> None:
    url = attempts(private, public)[target]
    settings = make_settings(tmp_path, tasks_jwt_secret=SECRET)
    async with running(settings) as (client, _gw):
        if face == "tasks":
            body = {"task_type": "GENERATION", "prompt": "x", "origin_instance": "t"}
            resp = await client.post(
                "/api/v1/tasks/", json={**body, "webhook_url": url}, headers=auth("alice")
            )
            assert resp.status_code == 422, resp.text
            [problem] = resp.json()["detail"]
            assert problem["loc"] == ["body", "webhook_url"] and RULE in problem["msg"]
        else:
            path, body = JOB_FACES[face]
            resp = await client.post(path, json={**body, "webhook_url": url}, headers=AUTH_A)
            assert resp.status_code == 400, resp.text
            error = resp.json()["error"]
            assert error["param"] == "webhook_url" and RULE in error["message"]
        listed = (await client.get("/v1/jobs", headers=AUTH_A)).json()["jobs"]
        tasks = (await client.get("/api/v1/tasks/", headers=auth("alice"))).json()

    assert listed == [] and tasks == []  # no job was created
    assert private.seen == [] and network.connections == []


async def test_a_webhook_target_redirecting_to_loopback_is_not_followed(
    tmp_path: Path, network: Network, private: Site, public: Site
) -> None:
    """The target is public when the job is made, so it is taken; its answer, a redirect to
    loopback, is not followed: the delivery fails and loopback sees nothing."""
    url = f"http://hooks.example:{public.port}/redirect"
    settings = make_settings(tmp_path, webhook_retry_base_seconds=60)
    async with running(settings) as (client, _gw):
        path, body = JOB_FACES["jobs-images"]
        resp = await client.post(path, json={**body, "webhook_url": url}, headers=AUTH_A)
        assert resp.status_code == 202, resp.text
        job_id = resp.json()["id"]
        await wait_for(client, job_id)
        delivery = await eventually(lambda: _first_attempted_delivery(client, job_id))

    assert delivery["status"] != "delivered" and delivery["last_status_code"] == 307
    assert "redirect" in delivery["last_error"]
    assert public.seen == ["POST /redirect"]
    assert private.seen == [] and network.private() == []


async def test_a_webhook_name_that_rebinds_to_loopback_after_submit_is_refused_at_send(
    tmp_path: Path, network: Network, private: Site, public: Site
) -> None:
    """DNS rebinding: the name is public when the job is made and points at loopback when
    the webhook is sent. The send checks again, and fails the delivery for good."""
    url = f"http://hooks.example:{private.port}/hook"
    settings = make_settings(tmp_path, sandbox_latency=0.3)
    async with running(settings) as (client, _gw):
        path, body = JOB_FACES["jobs-images"]
        resp = await client.post(path, json={**body, "webhook_url": url}, headers=AUTH_A)
        assert resp.status_code == 202, resp.text
        network.dns["hooks.example"] = "127.0.0.1"  # before the job can have finished
        job_id = resp.json()["id"]
        await wait_for(client, job_id)
        delivery = await eventually(lambda: _first_attempted_delivery(client, job_id))

    assert delivery["status"] == "failed", delivery
    assert RULE in delivery["last_error"] and "127.0.0.1" in delivery["last_error"]
    assert private.seen == [] and network.connections == []


async def _first_attempted_delivery(client: httpx.AsyncClient, job_id: str) -> Any:
    job = (await client.get(f"/v1/jobs/{job_id}", headers=AUTH_A)).json()
    deliveries = (job.get("webhook") or {}).get("deliveries") or []
    return next((d for d in deliveries if d["attempts"] >= 1), None)


# -- (b) input images fetched by a route -------------------------------------------------------

#: models whose sandbox route fetches an input image, and the field it comes from
FETCHING = {
    "sandbox-upscale": ("image_url", {}),
    "sandbox-edit": ("image_url", {"prompt": "make it blue"}),
    "sandbox-face-swap": ("source_image", {"target_image": "data:image/png;base64,"}),
}


@pytest.mark.parametrize("target", ATTEMPTS)
@pytest.mark.parametrize("model", sorted(FETCHING))
async def test_a_private_input_image_fails_the_job_naming_the_field_and_the_rule(
    tmp_path: Path, network: Network, private: Site, public: Site, model: str, target: str
) -> None:
    field_name, rest = FETCHING[model]
    raw = {**rest, field_name: attempts(private, public)[target]}
    if model == "sandbox-face-swap":
        raw["target_image"] = f"http://images.example:{public.port}/face.png"
    async with running(make_settings(tmp_path)) as (client, _gw):
        resp = await client.post("/v1/jobs", json={"model": model, "input": raw}, headers=AUTH_A)
        assert resp.status_code == 202, resp.text  # URLs are fetched when the job runs
        job = await wait_for(client, resp.json()["id"])

    assert job["status"] == "FAILED", job
    error = job["error"]
    assert error["code"] == "invalid_input", error
    assert f"'{field_name}'" in error["message"] and RULE in error["message"], error
    if target.startswith("redirect"):
        assert "redirected" in error["message"]
        assert "GET /redirect" in public.seen
    assert job["retry_count"] == 0 and len(job["attempts"]) == 1  # an input error: no retry
    assert private.seen == [] and network.private() == []


async def test_the_same_input_from_a_public_address_is_fetched(
    tmp_path: Path, network: Network, private: Site, public: Site
) -> None:
    """The control of the test above: the network, the DNS and the route work, so what
    refuses the private attempts is the guard."""
    raw = {"image_url": f"http://images.example:{public.port}/in.png", "scale_factor": 2}
    async with running(make_settings(tmp_path)) as (client, _gw):
        body = {"model": "sandbox-upscale", "input": raw}
        resp = await client.post("/v1/jobs", json=body, headers=AUTH_A)
        job = await wait_for(client, resp.json()["id"])

    assert job["status"] == "COMPLETED", job
    assert (job["result"]["width"], job["result"]["height"]) == (16, 16)
    assert public.seen == ["GET /in.png"] and network.connections == [PUBLIC]
    assert private.seen == []


# -- (c) host names that are not valid domain names --------------------------------------------

#: punycode that decodes to a code point IDNA refuses, an empty A-label, a label over 63
BAD_HOSTS = ["xn--a.com", "xn--", "a" * 64 + ".example"]


@pytest.mark.parametrize("host", BAD_HOSTS)
@pytest.mark.parametrize("face", [*JOB_FACES, "tasks"])
async def test_an_invalid_webhook_host_name_is_refused_at_submit_on_every_face(
    tmp_path: Path, network: Network, face: str, host: str
) -> None:
    url = f"http://{host}/hook"
    settings = make_settings(tmp_path, tasks_jwt_secret=SECRET)
    async with running(settings) as (client, _gw):
        if face == "tasks":
            body = {"task_type": "GENERATION", "prompt": "x", "origin_instance": "t"}
            resp = await client.post(
                "/api/v1/tasks/", json={**body, "webhook_url": url}, headers=auth("alice")
            )
            assert resp.status_code == 422, resp.text
            [problem] = resp.json()["detail"]
            assert problem["loc"] == ["body", "webhook_url"], problem
            assert "not a valid domain name" in problem["msg"]
        else:
            path, body = JOB_FACES[face]
            resp = await client.post(path, json={**body, "webhook_url": url}, headers=AUTH_A)
            assert resp.status_code == 400, resp.text
            error = resp.json()["error"]
            assert error["param"] == "webhook_url" and error["code"] == "invalid_url"
            assert "not a valid domain name" in error["message"]
        listed = (await client.get("/v1/jobs", headers=AUTH_A)).json()["jobs"]

    assert listed == [] and network.connections == []


@pytest.mark.parametrize("host", BAD_HOSTS)
@pytest.mark.parametrize("model", sorted(FETCHING))
async def test_an_invalid_input_image_host_name_fails_the_job_as_an_input_error(
    tmp_path: Path, network: Network, public: Site, model: str, host: str
) -> None:
    field_name, rest = FETCHING[model]
    raw = {**rest, field_name: f"http://{host}/in.png"}
    if model == "sandbox-face-swap":
        raw["target_image"] = f"http://images.example:{public.port}/face.png"
    async with running(make_settings(tmp_path)) as (client, _gw):
        resp = await client.post("/v1/jobs", json={"model": model, "input": raw}, headers=AUTH_A)
        assert resp.status_code == 202, resp.text
        job = await wait_for(client, resp.json()["id"])

    assert job["status"] == "FAILED", job
    assert job["error"]["code"] == "invalid_input", job["error"]
    assert f"'{field_name}'" in job["error"]["message"], job["error"]
    assert "not a valid domain name" in job["error"]["message"], job["error"]
    [attempt] = job["attempts"]
    assert attempt["outcome"] == "failed" and attempt["ended_at"] is not None
