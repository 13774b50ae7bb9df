"""``shielded(write)``: a state write that runs to its end even when its caller is cancelled.

The final writes of a job (an attempt opened, a finish, a hand-back) must not be cut in half
by a cancel (a shutdown, a user's cancel, a lease lost), so they are shielded, as arq does.
A shielded write whose caller was cancelled runs on as a task with nobody awaiting it; when
it then fails (typically ``StaleLease``: the job ended or moved on meanwhile, which is
expected) its error is retrieved here and logged at debug level, instead of asyncio's
"Task exception was never retrieved" at error level.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Coroutine
from typing import Any, TypeVar

log = logging.getLogger("backserv.scheduler")

T = TypeVar("T")


async def shielded(write: Coroutine[Any, Any, T]) -> T:
    """Await ``write`` to its end; a cancel of the caller does not stop it."""
    task = asyncio.ensure_future(write)
    task.add_done_callback(_retrieve)
    return await asyncio.shield(task)


def _retrieve(task: asyncio.Future[Any]) -> None:
    if not task.cancelled() and (exc := task.exception()) is not None:
        log.debug("a shielded write ended with %r", exc)
