"""Two replicas on separate "machines": one PostgreSQL database, one bucket (moto's S3
server), and a different local directory each, so a file can only be shared through the
bucket. Jobs run on one replica are downloaded through the other; a replica killed with
SIGKILL in the middle of an upload leaves no job COMPLETED without its object.

Needs a PostgreSQL server (``BACKSERV_TEST_POSTGRES_URL``): skipped without one, failed
without one when ``CI=true``.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx

from tests.api.support import open_image
from tests.emulators.fal import FalEmulator, create_fal_app
from tests.emulators.server import serve
from tests.postgres import fresh_database
from tests.s3server import S3Server
from tests.scenarios.replicas_support import (
    accepted_submits,
    replica_of,
    replicas,
    submit_round_robin,
    until_all_terminal,
)

JOBS = 24


def through(url: str, client: httpx.AsyncClient) -> str:
    """``url`` (a replica's signed result URL) on ``client``'s replica instead."""
    parts = urlsplit(url)
    return f"{client.base_url}".rstrip("/") + f"{parts.path}?{parts.query}"


async def assert_readable(client: httpx.AsyncClient, job: dict[str, Any]) -> None:
    resp = await client.get(through(job["result"]["url"], client), headers={"Authorization": ""})
    assert resp.status_code == 200, (job["id"], resp.status_code, resp.text[:200])
    assert resp.headers["content-type"] == "image/png"
    assert open_image(resp.content).format == "PNG"


def runner_of(fal: FalEmulator) -> dict[str, int]:
    """Which replica submitted each job to fal (its last accepted submission)."""
    return {job_id: replica_of(subs[-1].headers) for job_id, subs in accepted_submits(fal).items()}


def separate_machines(
    tmp_path: Path, s3: S3Server, bucket: str, proxy_for_a: str | None = None
) -> Callable[[int], dict[str, str]]:
    """Each replica's own disk, one bucket; replica 0 reaches the bucket through
    ``proxy_for_a`` when given."""

    def env_of(i: int) -> dict[str, str]:
        env = {**s3.environment(bucket), "BACKSERV_STORAGE_DIR": str(tmp_path / f"disk-{i}")}
        if i == 0 and proxy_for_a is not None:
            env["BACKSERV_S3_ENDPOINT_URL"] = proxy_for_a
        return env

    return env_of


async def test_jobs_run_on_one_replica_download_through_the_other(
    tmp_path: Path, s3: S3Server, bucket: str
) -> None:
    fal_app = create_fal_app()
    fal: FalEmulator = fal_app.state.emulator
    fal.configure(latency=0.2)
    async with (
        fresh_database() as database_url,
        serve(fal_app) as fal_url,
        replicas(
            tmp_path,
            database_url,
            fal_url,
            count=2,
            fal_limit=8,
            env_of=separate_machines(tmp_path, s3, bucket),
        ) as group,
    ):
        ids = await submit_round_robin(group.clients, JOBS)
        jobs = await until_all_terminal(group.clients[0], ids, 60, group.logs)
        assert [jobs[i]["status"] for i in ids] == ["COMPLETED"] * JOBS, group.logs()
        ran_on = runner_of(fal)
        for job_id in ids:
            other = group.clients[1 - ran_on[job_id]]
            await assert_readable(other, jobs[job_id])

    assert set(ran_on.values()) == {0, 1}, "one replica ran every job"
    assert len(s3.keys(bucket)) == JOBS
    for i in (0, 1):  # no result file on either machine's disk
        assert not list((tmp_path / f"disk-{i}").rglob("*.png"))


class HoldingProxy:
    """A TCP proxy to the S3 server that, once armed, forwards half of the first result
    upload it sees and holds the rest: the replica behind it is then mid-upload."""

    def __init__(self, target: str) -> None:
        parts = urlsplit(target)
        self.host, self.port = parts.hostname or "127.0.0.1", parts.port or 80
        self.holding = asyncio.Event()
        self.handlers: set[asyncio.Task[None]] = set()

    async def _pipe_up(self, reader: asyncio.StreamReader, up: asyncio.StreamWriter) -> None:
        while data := await reader.read(65536):
            line = data.split(b"\r\n", 1)[0]
            if not self.holding.is_set() and line.startswith(b"PUT ") and b"/results/" in line:
                # the whole head (a cut one would be a malformed request, not an upload in
                # flight) and half of the body bytes that came with it
                end = data.find(b"\r\n\r\n")
                cut = len(data) if end < 0 else end + 4 + (len(data) - end - 4) // 2
                up.write(data[:cut])
                await up.drain()
                self.holding.set()
                while await reader.read(65536):  # swallow the rest until the replica dies
                    pass
                return
            up.write(data)
            await up.drain()

    @staticmethod
    async def _pipe_down(up: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while data := await up.read(65536):
            writer.write(data)
            await writer.drain()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        if task is not None:
            self.handlers.add(task)
            task.add_done_callback(self.handlers.discard)
        up_reader, up_writer = await asyncio.open_connection(self.host, self.port)
        try:
            with contextlib.suppress(ConnectionError):
                await asyncio.gather(
                    self._pipe_up(reader, up_writer), self._pipe_down(up_reader, writer)
                )
        finally:
            up_writer.close()
            writer.close()

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[str]:
        server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        try:
            yield f"http://127.0.0.1:{port}"
        finally:
            server.close()
            for task in list(self.handlers):  # connections still open: ended, not abandoned
                task.cancel()
            await asyncio.gather(*self.handlers, return_exceptions=True)
            with contextlib.suppress(Exception):
                await asyncio.wait_for(server.wait_closed(), 5)


async def test_a_replica_killed_mid_upload_leaves_no_job_completed_without_its_object(
    tmp_path: Path, s3: S3Server, bucket: str
) -> None:
    fal_app = create_fal_app()
    fal: FalEmulator = fal_app.state.emulator
    fal.configure(latency=0.2)
    proxy = HoldingProxy(s3.endpoint)
    async with (
        fresh_database() as database_url,
        serve(fal_app) as fal_url,
        proxy.running() as proxy_url,
        replicas(
            tmp_path,
            database_url,
            fal_url,
            count=2,
            fal_limit=8,
            env_of=separate_machines(tmp_path, s3, bucket, proxy_for_a=proxy_url),
        ) as group,
    ):
        a, b = group.clients
        ids: list[str] = []
        for _ in range(6):  # B may claim a round's jobs before A: submit until A is caught
            ids += await submit_round_robin([a], 8)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(proxy.holding.wait(), 10)
            if proxy.holding.is_set():
                break
        assert proxy.holding.is_set(), "replica A never uploaded a result"
        await group.kill(0)
        visible_at_kill = set(s3.keys(bucket))
        jobs = await until_all_terminal(b, ids, 60, group.logs)
        for job_id in ids:
            job = jobs[job_id]
            assert job["status"] in ("COMPLETED", "FAILED"), job
            if job["status"] == "COMPLETED":
                await assert_readable(b, job)
        completed = [i for i in ids if jobs[i]["status"] == "COMPLETED"]
        assert len(s3.keys(bucket)) == len(completed)

    # the upload that was cut off never became visible: every key at the kill was whole
    for key in visible_at_kill:
        body = s3.client().get_object(Bucket=bucket, Key=key)["Body"].read()
        assert open_image(body).format == "PNG"
    ran_on = runner_of(fal)
    assert any(ran_on[i] == 1 for i in completed), "the survivor finished none of A's jobs"
