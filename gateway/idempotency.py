"""The ``Idempotency-Key`` header of job-creating POSTs, as every face reads it.

A client that may retry a submit (a timeout, a dropped connection) sends a key of its own
choosing. The same key with the same request returns the job the first request created
(same id, header ``Idempotent-Replayed: true``); the same key with a different request is a
422. Keys are scoped per API key and stored in the job's own row, so they live as long as
the job record (``record_ttl_seconds``, at least a day).

"The same request" is the same endpoint path and the same JSON body, compared through a
SHA-256 of the path and the body's canonical form (orjson, keys sorted): key order and
whitespace do not matter, values do. A face calls ``read_idempotency`` once it has the body,
passes it in its ``JobRequest`` to ``JobService.submit`` and answers a replay with
``replay_headers``.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import orjson

from gateway.errors import InvalidRequest

HEADER = "Idempotency-Key"
REPLAYED_HEADER = "Idempotent-Replayed"
MAX_KEY_LENGTH = 255
_PRINTABLE_ASCII = re.compile(rf"[\x20-\x7e]{{1,{MAX_KEY_LENGTH}}}")


@dataclass(frozen=True)
class Idempotency:
    key: str
    request_hash: str


def request_hash(path: str, body: Any) -> str:
    """SHA-256 (hex) of the endpoint path and the body's canonical JSON."""
    digest = hashlib.sha256(path.encode())
    digest.update(b"\n")
    digest.update(orjson.dumps(body, option=orjson.OPT_SORT_KEYS))
    return digest.hexdigest()


def read_idempotency(headers: Mapping[str, str], path: str, body: Any) -> Idempotency | None:
    """The request's key and hash; None without the header; 400 for a malformed key."""
    key = headers.get(HEADER)
    if key is None:
        return None
    if not _PRINTABLE_ASCII.fullmatch(key):
        raise InvalidRequest(
            f"Invalid '{HEADER}' header: it must be 1 to {MAX_KEY_LENGTH} printable ASCII "
            f"characters (a UUID is a good choice).",
            param=HEADER,
            code="invalid_idempotency_key",
        )
    return Idempotency(key, request_hash(path, body))


def replay_headers(replayed: bool) -> dict[str, str]:
    """The headers that mark an answer as a replay of an earlier request."""
    return {REPLAYED_HEADER: "true"} if replayed else {}
