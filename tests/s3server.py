"""An S3-compatible server for the tests: moto's server mode on 127.0.0.1, a free port.

``s3_server`` starts one (``ThreadedMotoServer``, in this process: replicas started as
subprocesses reach it over HTTP); ``S3Server.new_bucket()`` makes an empty bucket per test.
The gateway talks to it with its real client (obstore); the tests look inside with boto3,
another real client, so neither side is a mock.
"""

from __future__ import annotations

import contextlib
import secrets
import socket
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import boto3
from moto.server import ThreadedMotoServer

ACCESS_KEY = "backserv-test"
SECRET_KEY = "backserv-test-secret"
REGION = "us-east-1"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@dataclass
class S3Server:
    endpoint: str

    def client(self) -> Any:
        """A boto3 client of the server: what a test inspects the bucket with."""
        return boto3.client(
            "s3",
            endpoint_url=self.endpoint,
            aws_access_key_id=ACCESS_KEY,
            aws_secret_access_key=SECRET_KEY,
            region_name=REGION,
        )

    def new_bucket(self) -> str:
        name = f"backserv-{secrets.token_hex(6)}"
        self.client().create_bucket(Bucket=name)
        return name

    def keys(self, bucket: str) -> list[str]:
        listed = self.client().list_objects_v2(Bucket=bucket)
        return sorted(o["Key"] for o in listed.get("Contents", []))

    def pending_uploads(self, bucket: str) -> list[str]:
        """Keys of multipart uploads begun and neither completed nor aborted."""
        listed = self.client().list_multipart_uploads(Bucket=bucket)
        return [u["Key"] for u in listed.get("Uploads", [])]

    def settings(self, bucket: str, prefix: str = "results") -> dict[str, Any]:
        """The gateway's settings for ``bucket`` on this server."""
        return {
            "storage_url": f"s3://{bucket}/{prefix}",
            "s3_endpoint_url": self.endpoint,
            "s3_region": REGION,
            "s3_access_key_id": ACCESS_KEY,
            "s3_secret_access_key": SECRET_KEY,
        }

    def environment(self, bucket: str, prefix: str = "results") -> dict[str, str]:
        """The same, as a replica's environment variables."""
        return {f"BACKSERV_{k.upper()}": str(v) for k, v in self.settings(bucket, prefix).items()}


@contextlib.contextmanager
def s3_server() -> Iterator[S3Server]:
    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    try:
        yield S3Server(f"http://127.0.0.1:{port}")
    finally:
        server.stop()
