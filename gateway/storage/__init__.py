"""Result files: where the gateway keeps a job's outputs, behind one small seam.

    base.py     ResultStorage (the seam), StoredFile, FileInfo, the file-name rules
    sources.py  a provider's output as a bounded stream of chunks (bytes, data: URL, download)
    bucket.py   BucketConfig: which bucket, endpoint, region and credentials
    local.py    LocalStorage: a directory (the embedded default, BACKSERV_STORAGE_DIR)
    s3.py       ObjectStorage: an S3-compatible bucket (BACKSERV_STORAGE_URL=s3://bucket/prefix)

``open_storage`` picks the backend from the settings' values; obstore is imported only when a
bucket is configured (it is the ``s3`` extra).
"""

from __future__ import annotations

from pathlib import Path

from gateway.errors import ConfigError
from gateway.storage.base import FileInfo, ResultStorage, StoredFile, safe_names
from gateway.storage.bucket import BucketConfig
from gateway.storage.local import LocalStorage
from gateway.storage.sources import OutputSource

__all__ = [
    "BucketConfig",
    "FileInfo",
    "LocalStorage",
    "OutputSource",
    "ResultStorage",
    "StoredFile",
    "open_storage",
    "safe_names",
]


def open_storage(
    bucket: BucketConfig | None, directory: Path, sources: OutputSource
) -> ResultStorage:
    """Files in ``bucket``, or in ``directory`` when no bucket is configured."""
    if bucket is None:
        return LocalStorage(directory, sources)
    try:
        from gateway.storage.s3 import ObjectStorage  # obstore: only when a bucket is used
    except ImportError as exc:
        raise ConfigError(
            "BACKSERV_STORAGE_URL names a bucket, but the S3 client is not installed: "
            "pip install 'backserv[s3]' (obstore)"
        ) from exc
    return ObjectStorage(bucket, sources)
