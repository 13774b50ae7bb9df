"""Where a result bucket is and how to reach it (``BACKSERV_STORAGE_URL`` and friends).

Kept apart from ``s3.py`` so the settings and the composition root can name a bucket
without importing the S3 client.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class BucketConfig:
    """Where the bucket is and how to reach it; None fields fall back to the AWS_*
    environment and the instance's role, as AWS's own tools do."""

    bucket: str
    prefix: str = ""
    endpoint_url: str | None = None
    region: str | None = None
    access_key_id: str | None = None
    secret_access_key: str | None = field(default=None, repr=False)
    session_token: str | None = field(default=None, repr=False)
    timeout_seconds: float = 30.0

    @classmethod
    def parse(cls, url: str) -> BucketConfig:
        """The bucket and prefix of ``s3://bucket[/prefix]`` (the rest: ``dataclasses.replace``);
        a ValueError says what is wrong."""
        if not url.startswith("s3://"):
            raise ValueError("must be s3://bucket or s3://bucket/prefix")
        bucket, _, prefix = url[len("s3://") :].partition("/")
        if not bucket:
            raise ValueError("names no bucket: use s3://bucket or s3://bucket/prefix")
        return cls(bucket, prefix.strip("/"))

    @property
    def url(self) -> str:
        return f"s3://{self.bucket}/{self.prefix}".rstrip("/")
