"""Exceptions nobody translated: the machine running short of something, and bugs.

Providers translate the errors they expect at their edge; this module handles the rest, for
the in-process providers and for the runner around every provider. Such an exception's text
is never shown to a client (an ``OSError`` names the file it failed on: a server path), and
it is sorted in two:

- an OS error saying the machine ran short of something for a while (``EMFILE``, ``ENFILE``,
  ``ENOMEM``, ``ENOSPC``, ``EAGAIN``, ``EIO``, ...), or a ``MemoryError``, becomes
  ``ProviderResourceExhausted``: retried by the runner until the job's deadline, so an
  accepted job is never failed because the gateway's host was busy;
- anything else becomes a permanent "internal provider error" whose message says only that;
  the exception is logged in full, with the job id.
"""

from __future__ import annotations

import errno
import logging

from gateway.errors import ProviderError, ProviderResourceExhausted

__all__ = ["TRANSIENT_ERRNOS", "resource_shortage", "unexpected_error"]

#: OS errors that say a resource ran short, not that the request or the code is wrong
TRANSIENT_ERRNOS = frozenset(
    getattr(errno, name)
    for name in ("EMFILE", "ENFILE", "ENOMEM", "ENOSPC", "EAGAIN", "EIO", "ENOBUFS", "EDQUOT")
    if hasattr(errno, name)
)
#: how far down ``__cause__`` / ``__context__`` a shortage is looked for
_CHAIN_DEPTH = 5


def resource_shortage(exc: BaseException) -> str | None:
    """The errno name (``"EMFILE"``) when ``exc``, or what it was raised from, says the
    machine ran short of a resource for a while; None for anything else."""
    seen: BaseException | None = exc
    for _ in range(_CHAIN_DEPTH):
        if seen is None:
            return None
        if isinstance(seen, MemoryError):
            return "ENOMEM"
        code = seen.errno if isinstance(seen, OSError) else None
        if code is not None and code in TRANSIENT_ERRNOS:
            return errno.errorcode[code]
        seen = seen.__cause__ or seen.__context__
    return None


def unexpected_error(
    exc: BaseException, *, who: str, job_id: str | None, log: logging.Logger
) -> ProviderError:
    """The error a job gets for ``exc``, an exception nothing translated; logged here.

    ``who`` names the component in the message (``"the sandbox"``); the message carries
    neither the exception's text nor a path.
    """
    shortage = resource_shortage(exc)
    if shortage is not None:
        log.warning(
            "%s: job %s: temporary resource exhaustion (%s): %r",
            who,
            job_id,
            shortage,
            exc,
            extra={"job_id": job_id},
        )
        return ProviderResourceExhausted(
            f"{_capital(who)} could not run the job: temporary resource exhaustion ({shortage})."
        )
    log.error("%s: job %s: unexpected error", who, job_id, exc_info=exc, extra={"job_id": job_id})
    return ProviderError(
        f"{_capital(who)} had an internal error; the details are in the server's log.",
        code="internal_provider_error",
    )


def _capital(text: str) -> str:
    return text[:1].upper() + text[1:]
