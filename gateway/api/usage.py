"""What keys spent: ``GET /v1/usage``.

Query: ``start`` and ``end`` (UTC days, ``YYYY-MM-DD``, inclusive; default the last 30 days),
``group_by`` (a comma list of ``day``, ``model``, ``provider``, ``key``; default
``day,model,provider``), ``format=csv`` (or ``Accept: text/csv``) for CSV, and ``key_id``.

A key sees its own usage, with its budgets and what counts against them. A key with the
``admin`` scope sees every key's (no ``key_id``), or one key's (``key_id``). The work is
``gateway/usage.py``'s, which ``backserv usage`` shares.
"""

from __future__ import annotations

import contextlib

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from gateway.api.common import json, principal
from gateway.errors import InvalidRequest, NotFound, PermissionDenied
from gateway.keys import KeyManager
from gateway.usage import Usage

_NO_STORE = {"Cache-Control": "no-store"}


class UsageAPI:
    def __init__(self, usage: Usage, keys: KeyManager) -> None:
        self.usage = usage
        self.keys = keys

    def routes(self) -> list[Route]:
        return [Route("/v1/usage", self.get, methods=["GET"])]

    async def get(self, request: Request) -> Response:
        who = await principal(request)
        query = request.query_params
        key_id = query.get("key_id") or None
        if key_id is not None and key_id != who.key_id and not who.is_admin:
            raise PermissionDenied(
                "Another key's usage needs a key with the 'admin' scope.",
                param="key_id",
                code="admin_required",
            )
        owner = key_id if who.is_admin else who.key_id
        report = await self.usage.report(
            owner, start=query.get("start"), end=query.get("end"), group_by=query.get("group_by")
        )
        wants_csv = "text/csv" in request.headers.get("accept", "")
        fmt = query.get("format", "csv" if wants_csv else "json")
        if fmt not in ("json", "csv"):
            raise InvalidRequest(
                "Invalid 'format': must be json or csv.", param="format", code="invalid_value"
            )
        if fmt == "csv":
            name = f"usage-{report.start}-{report.end}.csv"
            headers = {**_NO_STORE, "Content-Disposition": f'attachment; filename="{name}"'}
            return Response(report.to_csv(), media_type="text/csv", headers=headers)
        body = report.to_dict()
        if owner is not None:
            budgets = who.limits.budgets if who.limits is not None else None
            if owner != who.key_id:
                budgets = None  # a key from BACKSERV_API_KEYS is not stored: no budget
                with contextlib.suppress(NotFound):
                    budgets = (await self.keys.get(owner)).budgets
            body["key_id"] = owner
            body["budgets"] = self.usage.budget_view(budgets, await self.usage.spent(owner))
        return json(body, headers=_NO_STORE)
