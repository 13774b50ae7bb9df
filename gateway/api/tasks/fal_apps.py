"""Which fal apps a task may name in ``fal_app_id`` when the catalog does not list them.

The Tasks API document has EXPERIMENTAL_FAL pass ``fal_app_id`` + ``fal_parameters`` straight
to fal. Every such task spends the operator's fal credit, so two lists bound it:

- ``BACKSERV_TASKS_FAL_APPS``: the apps any token may run, as glob patterns separated by commas
  or spaces (``fal-ai/*``, ``fal-ai/flux/dev``); ``*`` (the default) is any app, the
  document's behaviour; empty is none beyond the catalog's;
- the token's ``fal_apps`` claim (same patterns), which narrows what one token may run
  (catalog apps included): a 403 outside it.

An app the catalog lists (a model whose route targets it) is allowed by the setting: the
operator named it. An app id must look like one (``owner/app[/path]`` of letters, digits,
``.``, ``_`` and ``-``): it becomes part of the URL the gateway calls.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from fnmatch import fnmatchcase

from gateway.api.tasks.errors import invalid
from gateway.errors import PermissionDenied

APP_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*(/[A-Za-z0-9_-][A-Za-z0-9._-]*)+")
MAX_APP_ID = 200
LOC = ("body", "fal_app_id")


def parse_patterns(value: str) -> frozenset[str]:
    return frozenset(p for p in re.split(r"[,\s]+", value.strip()) if p)


def check_app_id(app_id: str) -> None:
    """A 422 unless ``app_id`` is shaped like a fal app id (and so safe in a URL path)."""
    if len(app_id) > MAX_APP_ID or not APP_ID.fullmatch(app_id) or "/../" in f"/{app_id}/":
        raise invalid(
            LOC,
            "must be a fal app id: 'owner/app' or 'owner/app/path' of letters, digits, '.', "
            f"'_' and '-' (at most {MAX_APP_ID} characters)",
            "string_pattern_mismatch",
        )


def _matches(app_id: str, patterns: Iterable[str]) -> bool:
    return any(fnmatchcase(app_id, p) for p in patterns)


class FalAppPolicy:
    def __init__(self, setting: str) -> None:
        self.patterns = parse_patterns(setting)

    def check(self, app_id: str) -> None:
        """A 422 naming the setting that refuses ``app_id``, for an app the catalog lacks."""
        check_app_id(app_id)
        if not _matches(app_id, self.patterns):
            listed = ", ".join(sorted(self.patterns)) or "none"
            raise invalid(
                LOC,
                f"'{app_id}' is not a fal app this gateway runs: it is not in the catalog and "
                f"not in BACKSERV_TASKS_FAL_APPS (which allows: {listed})",
            )

    @staticmethod
    def check_claim(app_id: str, claim: frozenset[str] | None) -> None:
        """A 403 when the token's ``fal_apps`` claim does not allow ``app_id`` (catalog apps
        included: the claim narrows what one token may spend)."""
        if claim is not None and not _matches(app_id, claim):
            listed = ", ".join(sorted(claim)) or "none"
            raise PermissionDenied(
                f"This token may not run the fal app '{app_id}' (its 'fal_apps' claim "
                f"allows: {listed})."
            )
