"""What the key ring keeps of the stored keys it read: principals by key hash, per epoch.

A poll or a submit with a stored key used to read the key's row every time (a round trip on
PostgreSQL), so that a revocation took effect at once. This cache keeps that promise
through the store's *key epoch* (``JobStore.key_epoch``): a number that moves whenever a
stored key may have changed, wherever the change was made, and that is None while the
store cannot tell (the PostgreSQL listener is down). An entry is stored under the epoch read
*before* the key was read, and is used only while that epoch is still the current one; the
first request to see a new epoch (or None) empties the cache. So:

- a key read before a change can never be served after it (its epoch is older);
- nothing is used or kept while the epoch is None;
- ``drop(key_id)`` (the store's key-change listener) removes a key's entries at once.

Entries also expire after ``ttl`` seconds (a backstop, not the mechanism) and the least
recently used go first beyond ``size``.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Generic, TypeVar

V = TypeVar("V")


@dataclass(frozen=True, slots=True)
class _Entry(Generic[V]):
    key_id: str
    value: V
    expires: float


class KnownKeys(Generic[V]):
    """Key hash -> what was read of that key (a principal), valid within one epoch."""

    def __init__(
        self, ttl: float, size: int = 10_000, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.ttl = ttl
        self.size = size
        self.clock = clock
        self._entries: OrderedDict[str, _Entry[V]] = OrderedDict()
        self._epoch: int | None = None

    @property
    def enabled(self) -> bool:
        return self.ttl > 0 and self.size > 0

    def __len__(self) -> int:
        return len(self._entries)

    def _at(self, epoch: int | None) -> bool:
        """Move to ``epoch`` (everything kept under another one goes); True when entries
        may be used and kept in it."""
        if epoch != self._epoch:
            self._entries.clear()
            self._epoch = epoch
        return epoch is not None

    def get(self, digest: str, epoch: int | None) -> V | None:
        """The value kept for ``digest`` if the store's current epoch is ``epoch``."""
        if not self._at(epoch):
            return None
        entry = self._entries.get(digest)
        if entry is None:
            return None
        if entry.expires <= self.clock():
            del self._entries[digest]
            return None
        self._entries.move_to_end(digest)
        return entry.value

    def put(self, digest: str, key_id: str, value: V, epoch: int | None) -> bool:
        """Keep ``value``, read after the store's epoch was ``epoch``; refused (False) when
        the epoch moved on since, or is None."""
        if not self.enabled or epoch is None or epoch != self._epoch:
            return False
        self._entries[digest] = _Entry(key_id, value, self.clock() + self.ttl)
        self._entries.move_to_end(digest)
        while len(self._entries) > self.size:
            self._entries.popitem(last=False)
        return True

    def drop(self, key_id: str) -> None:
        """The key ``key_id`` changed: forget it now (the store's key-change listener)."""
        for digest in [d for d, e in self._entries.items() if e.key_id == key_id]:
            del self._entries[digest]
