"""Ids of a prefix and 96 bits from the OS's CSPRNG, drawn many at a time.

``secrets.token_hex`` is a system call per id (``getrandom``), 3-5% of a poll's CPU under
load for its request id, and as much again per submit for its job id. ``RandomIds`` asks the
OS for ``batch`` ids' bytes at once and hands them out one by one: the same bytes from the
same source, so ids stay unpredictable (not ``random``'s Mersenne Twister, whose state and so
every later id follow from 208 of its 96-bit outputs). ``pop`` and ``extend`` on a list hold
the GIL, so each id drawn is handed out once without a lock; a forked child drops what its
parent drew ahead, or parent and child would hand out the same ids.
"""

from __future__ import annotations

import os
import weakref

__all__ = ["RandomIds"]

BATCH = 256
_drawn_ahead: weakref.WeakSet[RandomIds] = weakref.WeakSet()


def _forget_in_child() -> None:
    for ids in _drawn_ahead:
        ids._ahead.clear()


os.register_at_fork(after_in_child=_forget_in_child)


class RandomIds:
    """``prefix`` + ``2 * nbytes`` hex digits of CSPRNG output, per call."""

    def __init__(self, prefix: str, nbytes: int = 12, batch: int = BATCH) -> None:
        self.prefix = prefix
        self._nbytes = nbytes
        self._batch = batch
        self._ahead: list[str] = []
        _drawn_ahead.add(self)

    def __call__(self) -> str:
        try:
            return self._ahead.pop()
        except IndexError:
            pass
        raw = os.urandom(self._nbytes * self._batch).hex()
        step = 2 * self._nbytes
        self._ahead.extend([self.prefix + raw[i : i + step] for i in range(0, len(raw), step)])
        return self._ahead.pop()
