"""The HTTP edge (gateway/edge.py) and open waits (gateway/waiting.py), against a real server.

These are the attacks of issue #14 items 1-3, each sized to prove the point: slow headers that
used to hold descriptors until accepted jobs failed, a never-ending header line that used to be
buffered whole, and abandoned long-polls that used to run to their end.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import orjson

from tests.conftest import AUTH_A, AUTH_B, KEY_A, KEY_B
from tests.server import Server, running_server

KEYS = {"BACKSERV_API_KEYS": f"{KEY_A},{KEY_B}"}
STALLED_HEAD = b"GET /healthz HTTP/1.1\r\nHost: x\r\n"


def connect(server: Server, timeout: float = 5.0) -> socket.socket:
    return socket.create_connection(("127.0.0.1", server.port), timeout=timeout)


def read_all(sock: socket.socket, timeout: float) -> bytes:
    """Everything the server sends until it closes the connection (or ``timeout``)."""
    sock.settimeout(timeout)
    chunks = []
    with contextlib.suppress(TimeoutError, ConnectionResetError):
        while chunk := sock.recv(65536):
            chunks.append(chunk)
    return b"".join(chunks)


def closed_by_server(sock: socket.socket, timeout: float) -> bool:
    """True once the server has closed (or reset) the connection within ``timeout``."""
    sock.settimeout(timeout)
    try:
        while sock.recv(65536):
            pass
    except TimeoutError:
        return False
    except ConnectionResetError:
        return True
    return True


@contextlib.contextmanager
def stalled_connections(server: Server, count: int) -> Iterator[list[socket.socket]]:
    """``count`` connections that each send half a request head and stop."""
    socks = []
    try:
        for _ in range(count):
            sock = connect(server)
            with contextlib.suppress(OSError):  # a connection past the overflow may be gone
                sock.sendall(STALLED_HEAD)
            socks.append(sock)
        yield socks
    finally:
        for sock in socks:
            sock.close()


def status_of(answer: bytes) -> int:
    return int(answer.split(b" ", 2)[1]) if answer.startswith(b"HTTP/1.1 ") else 0


def submit(client: httpx.Client) -> str:
    resp = client.post(
        "/v1/jobs/images",
        json={"model": "sandbox-image", "prompt": "a fox", "width": 64, "height": 64},
    )
    assert resp.status_code == 202, resp.text
    return str(resp.json()["id"])


def test_slow_headers_are_cut_off_and_accepted_jobs_still_complete(tmp_path: Path) -> None:
    env = {
        **KEYS,
        "BACKSERV_SANDBOX_LATENCY": "2",
        "BACKSERV_HEADER_TIMEOUT_SECONDS": "1",
    }
    # ulimit -n 512, as in the attack (1,100 connections at 1,024): more stalled connections
    # than the process has descriptors
    with (
        running_server(tmp_path, env, fd_limit=512) as server,
        httpx.Client(base_url=server.url, headers=AUTH_A) as client,
    ):
        jobs = [submit(client) for _ in range(5)]
        started = time.monotonic()
        with stalled_connections(server, 700) as socks:
            assert all(closed_by_server(s, 6.0) for s in socks), "a stalled head was kept open"
            assert time.monotonic() - started < 15
        assert client.get("/healthz").status_code == 200
        deadline = time.monotonic() + 30
        bodies = []
        for job_id in jobs:
            while True:
                body = client.get(f"/v1/jobs/{job_id}").json()
                if body["status"] in ("COMPLETED", "FAILED") or time.monotonic() > deadline:
                    break
                time.sleep(0.1)
            bodies.append(body)
        assert [b["status"] for b in bodies] == ["COMPLETED"] * 5, bodies


def test_a_request_past_the_connection_cap_is_read_and_answered_503(tmp_path: Path) -> None:
    env = {**KEYS, "BACKSERV_MAX_CONNECTIONS": "20", "BACKSERV_HEADER_TIMEOUT_SECONDS": "3"}
    with running_server(tmp_path, env) as server, stalled_connections(server, 22):
        sock = connect(server)
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        answer = read_all(sock, 5.0)
        sock.close()
        assert status_of(answer) == 503, answer[:200]
        head, _, body = answer.partition(b"\r\n\r\n")
        assert b"retry-after: 1" in head.lower()
        assert b"connection: close" in head.lower()
        assert orjson.loads(body)["error"]["code"] == "too_many_connections"
    # once the stalled connections are gone, the gateway answers again
    with running_server(tmp_path, env) as server:
        assert httpx.get(f"{server.url}/healthz").status_code == 200


def test_a_stalled_request_head_gets_a_408_and_is_closed(tmp_path: Path) -> None:
    env = {**KEYS, "BACKSERV_HEADER_TIMEOUT_SECONDS": "1"}
    with running_server(tmp_path, env) as server:
        sock = connect(server)
        sock.sendall(STALLED_HEAD)
        started = time.monotonic()
        answer = read_all(sock, 5.0)
        sock.close()
        assert status_of(answer) == 408, answer[:200]
        assert time.monotonic() - started < 4


def _rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS")


def test_a_never_ending_header_is_refused_431_without_being_buffered(tmp_path: Path) -> None:
    with running_server(tmp_path, KEYS) as server:
        ok = httpx.get(f"{server.url}/healthz", headers={"x-pad": "a" * 48_000})
        assert ok.status_code == 200  # a large head under the cap (64 KiB) is fine

        before = _rss_kib(server.pid)
        answers = []
        chunk = b"a" * 65536
        for _ in range(40):  # 40 connections, each offering 2 MB of one header line
            sock = connect(server)
            with contextlib.suppress(OSError):  # the server closes while we still send
                sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Long: ")
                for _ in range(32):
                    sock.sendall(chunk)
            answers.append(read_all(sock, 5.0))
            sock.close()
        grown_mib = (_rss_kib(server.pid) - before) / 1024
        assert all(status_of(a) == 431 for a in answers), {a[:40] for a in answers}
        assert grown_mib < 30, f"the server grew {grown_mib:.0f} MiB"
        assert httpx.get(f"{server.url}/healthz").status_code == 200


def _open_long_poll(server: Server, path: str) -> socket.socket:
    sock = connect(server)
    sock.sendall(
        f"GET {path} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {KEY_A}\r\n\r\n".encode()
    )
    return sock


def test_abandoned_long_polls_free_their_slots_and_the_cap_holds(tmp_path: Path) -> None:
    env = {**KEYS, "BACKSERV_SANDBOX_LATENCY": "60", "BACKSERV_MAX_WAITERS_PER_KEY": "5"}
    with (
        running_server(tmp_path, env) as server,
        httpx.Client(base_url=server.url, headers=AUTH_A) as client,
    ):
        job_id = submit(client)
        waits = [_open_long_poll(server, f"/v1/jobs/{job_id}?wait=60") for _ in range(4)]
        stream = _open_long_poll(server, f"/v1/jobs/{job_id}/events")  # streams count too
        time.sleep(0.5)
        over = client.get(f"/v1/jobs/{job_id}?wait=1")
        assert over.status_code == 429, over.text
        assert over.json()["error"]["code"] == "too_many_waiters"
        assert client.get(f"/v1/jobs/{job_id}").status_code == 200  # a plain poll is not a wait
        # another key has slots of its own
        auth_b = {"Authorization": f"Bearer {KEY_B}"}
        b_job = client.post(
            "/v1/jobs/images",
            json={"model": "sandbox-image", "prompt": "b", "width": 64, "height": 64},
            headers=auth_b,
        ).json()["id"]
        assert client.get(f"/v1/jobs/{b_job}?wait=1", headers=auth_b).status_code == 200

        for sock in [*waits, stream]:  # the clients give up
            sock.close()
        deadline = time.monotonic() + 5
        while True:
            again = client.get(f"/v1/jobs/{job_id}?wait=1")
            if again.status_code == 200 or time.monotonic() > deadline:
                break
            time.sleep(0.1)
        assert again.status_code == 200, "abandoned waits still hold their slots"


async def test_a_key_past_its_share_is_held_not_refused_and_every_accepted_job_completes(
    tmp_path: Path,
) -> None:
    """Key A sends 24 submits at once over 12 connections (its share is 2): each is held at
    the edge until its turn, none refused or lost, every job runs; key B is answered
    meanwhile."""
    job = {"model": "sandbox-image", "prompt": "a fox", "width": 64, "height": 64}
    env = {**KEYS, "BACKSERV_SANDBOX_LATENCY": "0.05"}
    many = httpx.Limits(max_connections=12)
    with running_server(tmp_path, env) as server:
        async with (
            httpx.AsyncClient(base_url=server.url, headers=AUTH_A, limits=many, timeout=30) as a,
            httpx.AsyncClient(base_url=server.url, headers=AUTH_B, timeout=30) as b,
        ):
            *submits, listing = await asyncio.gather(
                *(a.post("/v1/jobs/images", json=job) for _ in range(24)), b.get("/v1/jobs")
            )
            assert listing.status_code == 200
            assert [r.status_code for r in submits] == [202] * 24
            ids = {r.json()["id"] for r in submits}
            assert len(ids) == 24
            deadline = time.monotonic() + 60
            while ids and time.monotonic() < deadline:
                polls = await asyncio.gather(*(a.get(f"/v1/jobs/{i}") for i in ids))
                ids -= {p.json()["id"] for p in polls if p.json()["status"] == "COMPLETED"}
                await asyncio.sleep(0.1)
            assert not ids, f"jobs never completed: {sorted(ids)}"
