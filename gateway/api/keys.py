"""Key management for ``admin`` keys: ``/v1/keys``.

- ``POST /v1/keys`` ``{"name", "scopes"?, "rate_limit_per_second"?, "rate_limit_burst"?,
  "max_active_jobs"?, "budget_daily"?, "budget_monthly"?, "budget_total"?}`` -> 201, the key
  object with ``key``: the secret, shown this once.
- ``GET /v1/keys`` -> the stored keys, revoked ones included, never a secret or a hash.
- ``GET /v1/keys/{key_id}`` -> one key (what it spent: ``GET /v1/usage?key_id=``).
- ``PATCH /v1/keys/{key_id}`` -> change ``name``, a limit (``null``: the gateway's default)
  or a budget (``null``: none).
- ``DELETE /v1/keys/{key_id}`` -> revoke it, at once on every replica; again: the same answer.

Any other key gets a 403 (``admin_required``). The work is ``gateway/keys.py``'s, which the
``backserv keys`` command shares.
"""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from gateway.api.common import json, principal, read_json
from gateway.auth import Principal
from gateway.errors import InvalidRequest, PermissionDenied
from gateway.keys import (
    BUDGET_FIELDS,
    LIMIT_FIELDS,
    ApiKeyRecord,
    KeyManager,
    budgets_view,
    limits_of,
)
from gateway.pricing import DEFAULT_CURRENCY

_NO_STORE = {"Cache-Control": "no-store"}
_OWN_FIELDS = (*LIMIT_FIELDS, *BUDGET_FIELDS)
_CREATE_FIELDS = frozenset({"name", "scopes", *_OWN_FIELDS})


def render_key(record: ApiKeyRecord, currency: str = DEFAULT_CURRENCY) -> dict[str, Any]:
    return {
        "object": "api_key",
        "id": record.id,
        "name": record.name,
        "prefix": record.prefix,
        "scopes": record.scopes.split(),
        "status": "revoked" if record.revoked_at is not None else "active",
        "created_at": int(record.created_at),
        "revoked_at": None if record.revoked_at is None else int(record.revoked_at),
        "limits": limits_of(record),
        "budgets": budgets_view(record, currency),
    }


async def _admin(request: Request) -> Principal:
    who = await principal(request)
    if not who.is_admin:
        raise PermissionDenied(
            "Managing API keys needs a key with the 'admin' scope (backserv keys create --admin).",
            code="admin_required",
        )
    return who


class KeysAPI:
    def __init__(self, keys: KeyManager, max_body: int, currency: str = DEFAULT_CURRENCY) -> None:
        self.keys = keys
        self.max_body = max_body
        #: the catalog's currency: every budget is in it
        self.currency = currency

    def routes(self) -> list[Route]:
        return [
            Route("/v1/keys", self.create, methods=["POST"]),
            Route("/v1/keys", self.list_keys, methods=["GET"]),
            Route("/v1/keys/{key_id}", self.get, methods=["GET"]),
            Route("/v1/keys/{key_id}", self.update, methods=["PATCH"]),
            Route("/v1/keys/{key_id}", self.revoke, methods=["DELETE"]),
        ]

    async def create(self, request: Request) -> Response:
        await _admin(request)
        body = await read_json(request, self.max_body)
        for field in body:
            if field not in _CREATE_FIELDS:
                raise InvalidRequest(
                    f"Unknown parameter '{field}'. POST /v1/keys takes 'name', 'scopes', "
                    f"{', '.join(repr(f) for f in _OWN_FIELDS)}.",
                    param=field,
                    code="unknown_parameter",
                )
        if "name" not in body:
            raise InvalidRequest(
                "Missing required parameter 'name'.", param="name", code="missing_parameter"
            )
        key, record = await self.keys.create(
            body["name"],
            scopes=body.get("scopes"),
            limits={f: body[f] for f in _OWN_FIELDS if f in body},
        )
        headers = {**_NO_STORE, "Location": f"/v1/keys/{record.id}"}
        return json({**render_key(record, self.currency), "key": key}, 201, headers)

    async def list_keys(self, request: Request) -> Response:
        await _admin(request)
        data = [render_key(r, self.currency) for r in await self.keys.list()]
        return json({"object": "list", "data": data, "has_more": False}, headers=_NO_STORE)

    async def get(self, request: Request) -> Response:
        await _admin(request)
        record = await self.keys.get(request.path_params["key_id"])
        return json(render_key(record, self.currency), headers=_NO_STORE)

    async def update(self, request: Request) -> Response:
        await _admin(request)
        body = await read_json(request, self.max_body)
        record = await self.keys.update(request.path_params["key_id"], body)
        return json(render_key(record, self.currency), headers=_NO_STORE)

    async def revoke(self, request: Request) -> Response:
        await _admin(request)
        record = await self.keys.revoke(request.path_params["key_id"], keep_an_admin=True)
        return json(render_key(record, self.currency), headers=_NO_STORE)
