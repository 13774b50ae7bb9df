"""API keys: ``Authorization: Bearer <key>``; only a hash of each key is ever stored.

Keys come from ``BACKSERV_API_KEYS`` (kept in memory, never written) and from the store
(``backserv keys create``). A key's owner id is ``key_`` + the first 16 hex digits of its
SHA-256, so a static key keeps its jobs across restarts. Lookups go by hash, and the match is
confirmed with a constant-time comparison.

A stored key's principal (its id, scopes and limits) is kept by the hash of the key
(``KnownKeys``, gateway/auth_cache.py) for at most ``BACKSERV_AUTH_CACHE_SECONDS``, and only
within the store's *key epoch*: a number the store moves at every change of a stored key,
wherever it is made (on SQLite a trigger bumps it in the changing transaction, so
``backserv keys revoke`` from another process counts; on PostgreSQL every replica hears a
NOTIFY sent in the changing transaction, and the epoch is None, so nothing is kept, while the
listener is down). So revoking a key (``backserv keys revoke``, ``DELETE /v1/keys/{id}``) or
changing its limits takes effect at the next request, as when every request read the key: on
SQLite at once; on PostgreSQL at once on the replica that made the change and, on the others,
as soon as the notification arrives (the same milliseconds as the job-change relay). A
request then costs one read of the epoch on SQLite (a one-row table, on the loop), nothing on
PostgreSQL; with the cache off (0), the key's row is read at every request.

Unknown hashes are also remembered, for ``CACHE_SECONDS``, so a flood of wrong keys does not
become a flood of queries; a key created from the CLI may therefore take up to
``CACHE_SECONDS`` to be accepted by a replica that saw it before it existed.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from collections import OrderedDict
from dataclasses import dataclass

from gateway.auth_cache import KnownKeys
from gateway.errors import AuthenticationFailed
from gateway.ratelimit import KeyLimits
from gateway.store.base import ApiKeyRecord, JobStore

KEY_PREFIX = "bsk_"
CACHE_SECONDS = 2.0
CACHE_SIZE = 10_000


@dataclass(frozen=True)
class Principal:
    key_id: str
    scopes: frozenset[str] = frozenset()
    #: the key's own limits on job creation, as read with the key (None: the defaults)
    limits: KeyLimits | None = None

    @property
    def owner(self) -> str:
        return self.key_id

    @property
    def is_admin(self) -> bool:
        return "admin" in self.scopes


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def key_id_for(key_hash: str) -> str:
    return "key_" + key_hash[:16]


def generate_key() -> str:
    return KEY_PREFIX + secrets.token_urlsafe(32)


def new_key_record(
    name: str, scopes: str = "", limits: KeyLimits | None = None
) -> tuple[str, ApiKeyRecord]:
    key = generate_key()
    digest = hash_key(key)
    own = limits or KeyLimits()
    record = ApiKeyRecord(
        id=key_id_for(digest),
        name=name,
        key_hash=digest,
        prefix=key[:8],
        created_at=time.time(),
        scopes=scopes,
        rate_limit=own.rate_limit,
        rate_burst=own.rate_burst,
        max_active_jobs=own.max_active_jobs,
        budget_daily=None if own.budgets is None else own.budgets.daily,
        budget_monthly=None if own.budgets is None else own.budgets.monthly,
        budget_total=None if own.budgets is None else own.budgets.total,
    )
    return key, record


class KeyRing:
    def __init__(
        self,
        store: JobStore,
        static_keys: list[str],
        *,
        cache_seconds: float = 0.0,
        cache_size: int = CACHE_SIZE,
    ) -> None:
        self.store = store
        self._static: dict[str, Principal] = {}
        for key in static_keys:
            digest = hash_key(key)
            self._static[digest] = Principal(key_id_for(digest))
        self._cache: OrderedDict[str, tuple[float, Principal | None]] = OrderedDict()
        #: the stored keys' principals, valid within one key epoch of the store
        self.known: KnownKeys[Principal] = KnownKeys(cache_seconds, cache_size)
        if self.known.enabled:
            store.watch_keys(self.known.drop)

    async def authenticate(self, header: str | None) -> Principal:
        if not header:
            raise AuthenticationFailed(code="missing_api_key")
        scheme, _, key = header.partition(" ")
        key = key.strip()
        if scheme.lower() != "bearer" or not key:
            raise AuthenticationFailed(
                "The Authorization header must be 'Bearer <key>'.", code="invalid_api_key"
            )
        digest = hash_key(key)
        principal = self._static.get(digest)
        if principal is not None:
            return principal
        epoch = None
        if self.known.enabled:
            epoch = await self.store.key_epoch()  # before the key is read (auth_cache.py)
            principal = self.known.get(digest, epoch)
            if principal is not None:
                return principal
        principal = await self._lookup(digest)
        if principal is None:
            raise AuthenticationFailed("Incorrect API key provided.", code="invalid_api_key")
        self.known.put(digest, principal.key_id, principal, epoch)
        return principal

    async def _lookup(self, digest: str) -> Principal | None:
        """The key's principal, read from the store; a miss (unknown or revoked) is
        remembered for ``CACHE_SECONDS``."""
        now = time.monotonic()
        cached = self._cache.get(digest)
        if cached is not None and cached[0] > now:
            return cached[1]
        if cached is not None:
            del self._cache[digest]
        record = await self.store.find_key(digest)
        principal = None
        if (
            record is not None
            and record.revoked_at is None
            and hmac.compare_digest(record.key_hash, digest)
        ):
            principal = Principal(record.id, frozenset(record.scopes.split()), record.limits)
        if principal is not None:
            return principal
        self._cache[digest] = (now + CACHE_SECONDS, None)
        self._cache.move_to_end(digest)
        while len(self._cache) > CACHE_SIZE:
            self._cache.popitem(last=False)
        return principal

    async def bootstrap(self) -> str | None:
        """Create a first key when none exists at all; return it (shown once) or None."""
        if self._static or await self.store.list_keys():
            return None
        key, record = new_key_record("initial key", scopes="admin")
        await self.store.create_key(record)
        return key
