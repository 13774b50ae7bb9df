"""Figure 9: end-to-end jobs/s with result files in a bucket against a local directory.

The same run does both, one after the other, with target 3's job (``sandbox-image-fast``,
a 64x64 PNG) and client: first the files go to a directory, then to a bucket on an S3
server (moto's server mode, a subprocess on 127.0.0.1, started here). The ratio is
bucket/directory. Where the time goes: each job adds one PUT of its file to the bucket
(obstore, on the gateway's event loop, a thread pool in Rust), instead of a write and rename
in a worker thread; moto is a Python server on the same cores as the gateway and the
client, so the ratio is a floor for a bucket on another machine.
"""

from __future__ import annotations

import contextlib
import secrets
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx

from bench.e2e import E2E, bench_e2e
from bench.servers import BenchError, gateway_env
from tests.server import free_port

ACCESS = {"BACKSERV_S3_ACCESS_KEY_ID": "bench", "BACKSERV_S3_SECRET_ACCESS_KEY": "bench-secret"}


@dataclass
class ObjectStoreRun:
    local: E2E
    bucket: E2E

    @property
    def ratio(self) -> float:
        return self.bucket.jobs_per_second / self.local.jobs_per_second

    def line(self) -> str:
        return (
            f"9. Results in object storage: {self.bucket.jobs:,} jobs end to end with their "
            f"files in a bucket (moto's S3 server on this machine) "
            f"**{self.bucket.jobs_per_second:,.0f} jobs/s**, in a local directory "
            f"{self.local.jobs_per_second:,.0f} jobs/s, same run: bucket/directory "
            f"**{self.ratio:.2f}x**. Each job adds one PUT to the bucket; the S3 server "
            f"shares the cores with the gateway and the client."
        )


@contextlib.contextmanager
def s3_server(workdir: Path) -> Iterator[str]:
    """moto's S3 server as a subprocess; yields its endpoint."""
    port = free_port()
    endpoint = f"http://127.0.0.1:{port}"
    log = (workdir / "moto.log").open("ab")
    cmd = [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)]
    process = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                httpx.get(endpoint, timeout=1)
                break
            except httpx.TransportError:
                if process.poll() is not None or time.monotonic() > deadline:
                    raise BenchError(f"moto's S3 server did not start (see {log.name})") from None
                time.sleep(0.1)
        yield endpoint
    finally:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(10)
        log.close()


def bench_object_store(workdir: Path, jobs: int, concurrency: int, timeout: float) -> str:
    """Figure 9's line (or why it was not run)."""
    try:
        import boto3
    except ImportError:
        return "9. Results in object storage: not run (moto[server] is not installed)."
    workdir.mkdir(parents=True, exist_ok=True)
    local = bench_e2e(workdir / "local", gateway_env(), jobs, concurrency, timeout)
    with s3_server(workdir) as endpoint:
        bucket = f"bench-{secrets.token_hex(4)}"
        boto3.client(
            "s3",
            endpoint_url=endpoint,
            aws_access_key_id=ACCESS["BACKSERV_S3_ACCESS_KEY_ID"],
            aws_secret_access_key=ACCESS["BACKSERV_S3_SECRET_ACCESS_KEY"],
            region_name="us-east-1",
        ).create_bucket(Bucket=bucket)
        env = gateway_env(
            BACKSERV_STORAGE_URL=f"s3://{bucket}/results",
            BACKSERV_S3_ENDPOINT_URL=endpoint,
            BACKSERV_S3_REGION="us-east-1",
            **ACCESS,
        )
        in_bucket = bench_e2e(workdir / "bucket", env, jobs, concurrency, timeout)
    return ObjectStoreRun(local, in_bucket).line()
