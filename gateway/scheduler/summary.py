"""The error of a failed job: every route of its chain, primary first (in the order the job
walked them), and what became of it.

The attempt log holds each try's own error; a job's ``error`` is what a client (and the web
pages) read first, so it must name the real cause, not the last one seen. ``summarise``
builds it from the chain, the attempt log and the routes the last walk skipped::

    fal:fal-ai/flux/dev (primary): fal: cannot connect to queue.fal.run (ConnectError);
    3 tries. replicate:black-forest-labs/flux-dev (fallback): skipped, not configured:
    REPLICATE_API_TOKEN is not set.

Each route says one of: the last error of its attempts (and how many there were), why it
was skipped (not configured, circuit open), or that it was never reached (the job's time ran
out first). The message starts "Every route failed." only when every route was in fact
tried. ``code`` is the primary's, except when the job ended on an error that stops a job at
once (a submit that may have been accepted, a lost result): then that error's code, which
says what the client can do, and the routes it never reached go unmentioned. An input error
(the client's to fix, whatever the route) is its own message and code.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from gateway.errors import ProviderError, ProviderInputError
from gateway.jobs import Attempt
from providers.base import RouteSpec

__all__ = ["Skipped", "summarise"]


@dataclass(frozen=True)
class Skipped:
    """A route the runner passed over without a submit, and why."""

    error: ProviderError
    #: ``"not configured"`` or ``"circuit open"``
    why: str


def summarise(
    routes: Sequence[RouteSpec],
    attempts: Sequence[Attempt],
    skipped: Mapping[int, Skipped],
    final: ProviderError,
    *,
    fatal: bool,
    timed_out: bool,
    order: Sequence[int] | None = None,
) -> dict[str, Any]:
    """``{"code", "message"}`` for a job that failed on ``routes``; ``final`` is the error
    that ended it (``fatal``: one that stops a job at once), ``timed_out``: the job's own
    time limit ran out. ``order``: the indices of ``routes`` in the order the job walked
    them (default: as listed), the first of them its primary."""
    if isinstance(final, ProviderInputError):  # the input's fault: no route could help
        return {"code": final.code or "invalid_input", "message": final.message}
    parts: list[str] = []
    codes: list[str | None] = []
    tried_all = True
    for place, index in enumerate(range(len(routes)) if order is None else order):
        route = routes[index]
        mine = [
            a
            for a in attempts
            if a.route_index == index and a.route == route.name and a.error is not None
        ]
        label = _label(route, place, len(routes))
        if mine:
            error = mine[-1].error or {}
            tries = f"; {len(mine)} tries" if len(mine) > 1 else ""
            parts.append(f"{label}: {_sentence(str(error.get('message') or ''))}{tries}.")
            codes.append(error.get("code"))
        elif index in skipped:
            skip = skipped[index]
            parts.append(f"{label}: skipped, {skip.why}: {_sentence(skip.error.message)}.")
            codes.append(skip.error.code)
            tried_all = False
        else:
            tried_all = False
            codes.append(None)
            if not fatal:  # after a fatal error the routes not reached go unmentioned
                why = "the job's time limit was reached first" if timed_out else "not reached"
                parts.append(f"{label}: not tried ({why}).")
    code = final.code if fatal else next((c for c in codes[:1] if c), None) or final.code
    head = "Every route failed. " if tried_all and len(routes) > 1 else ""
    return {"code": code or "provider_error", "message": head + " ".join(parts)}


def _label(route: RouteSpec, place: int, count: int) -> str:
    if count == 1:
        return route.name
    return f"{route.name} ({'primary' if place == 0 else 'fallback'})"


def _sentence(text: str) -> str:
    """``text`` without its closing full stop (the summary adds its own)."""
    text = text.strip()
    return text[:-1] if text.endswith(".") else text
