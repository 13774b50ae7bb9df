"""Managing stored API keys: create, list, read, change limits, revoke.

The one implementation behind both ``backserv keys ...`` (gateway/cli.py) and the admin
endpoints under ``/v1/keys`` (gateway/api/keys.py). Every check lives here and raises the
gateway's own errors, naming the field, so both say the same thing.

A key is shown once, when it is created; only its SHA-256 is stored. Revoking is immediate
on every replica (every change of a key moves the store's key epoch, and the key
ring keeps what it read of a key only within one: gateway/auth.py) and final: a revoked key
cannot be changed or revived. Keys from ``BACKSERV_API_KEYS`` are not stored, so they are
neither listed nor managed here.
"""

from __future__ import annotations

import math
import re
import time
from typing import Any

from gateway.auth import new_key_record
from gateway.errors import Conflict, InvalidRequest, NotFound
from gateway.pricing import DEFAULT_CURRENCY, money, to_micros
from gateway.ratelimit import KeyLimits
from gateway.spend import Budgets, Spent, day_and_month
from gateway.store.base import ApiKeyRecord as ApiKeyRecord  # the record the key faces show
from gateway.store.base import JobStore

SCOPES = frozenset({"admin"})
MAX_NAME_LENGTH = 200
#: upper bounds that catch typos (a rate of 1e9) rather than limit anyone
MAX_RATE = 100_000.0
MAX_BURST = 1_000_000
MAX_ACTIVE = 1_000_000
MAX_BUDGET = 1_000_000_000.0
KEY_ID = re.compile(r"^key_[0-9a-f]{16}$")
#: the limit fields, as the API and the CLI name them -> the stored column
LIMIT_FIELDS = {
    "rate_limit_per_second": "rate_limit",
    "rate_limit_burst": "rate_burst",
    "max_active_jobs": "max_active_jobs",
}
#: the budget fields (numbers of the catalog's currency; stored in micros) -> the column
BUDGET_FIELDS = {
    "budget_daily": "budget_daily",
    "budget_monthly": "budget_monthly",
    "budget_total": "budget_total",
}


def check_name(value: Any, param: str = "name") -> str:
    if not isinstance(value, str):
        raise InvalidRequest(
            f"Invalid '{param}': must be a string.", param=param, code="invalid_type"
        )
    name = value.strip()
    if not name or len(name) > MAX_NAME_LENGTH or not name.isprintable():
        raise InvalidRequest(
            f"Invalid '{param}': must be 1 to {MAX_NAME_LENGTH} printable characters.",
            param=param,
            code="invalid_value",
        )
    return name


def check_scopes(value: Any, param: str = "scopes") -> str:
    """A list of scope names as stored (space-separated)."""
    if not isinstance(value, list) or not all(isinstance(s, str) for s in value):
        raise InvalidRequest(
            f"Invalid '{param}': must be a list of scope names (known: "
            f"{', '.join(sorted(SCOPES))}).",
            param=param,
            code="invalid_type",
        )
    unknown = sorted(set(value) - SCOPES)
    if unknown:
        raise InvalidRequest(
            f"Invalid '{param}': unknown scope '{unknown[0]}' (known: "
            f"{', '.join(sorted(SCOPES))}).",
            param=param,
            code="invalid_value",
        )
    return " ".join(sorted(set(value)))


def _number(value: Any, param: str, *, integer: bool, lo: float, hi: float) -> float | int:
    if isinstance(value, bool) or not isinstance(value, int | float):
        kind = "an integer" if integer else "a number"
        raise InvalidRequest(
            f"Invalid '{param}': must be {kind}, or null for the gateway's default.",
            param=param,
            code="invalid_type",
        )
    if isinstance(value, float) and not math.isfinite(value):
        raise InvalidRequest(
            f"Invalid '{param}': must be a finite number.", param=param, code="invalid_value"
        )
    if integer and not (isinstance(value, int) or value.is_integer()):
        raise InvalidRequest(
            f"Invalid '{param}': must be an integer.", param=param, code="invalid_type"
        )
    if not lo <= value <= hi:  # compared exactly: an int too large for a float is no error
        raise InvalidRequest(
            f"Invalid '{param}': must be between {lo:g} and {hi:g} (got {value}).",
            param=param,
            code="out_of_range",
        )
    return int(value) if integer else float(value)


def check_limit(field: str, value: Any) -> float | int | None:
    """One limit field as stored: ``None`` (the default), or a number within its bounds."""
    if value is None:
        return None
    if field == "rate_limit_per_second":
        return _number(value, field, integer=False, lo=0, hi=MAX_RATE)
    if field == "rate_limit_burst":
        return _number(value, field, integer=True, lo=1, hi=MAX_BURST)
    if field == "max_active_jobs":
        return _number(value, field, integer=True, lo=0, hi=MAX_ACTIVE)
    raise ValueError(f"not a limit field: {field!r}")


def check_limits(fields: dict[str, Any]) -> dict[str, Any]:
    """Limit fields (API names) -> stored columns, each checked."""
    return {LIMIT_FIELDS[f]: check_limit(f, v) for f, v in fields.items()}


def check_budget(field: str, value: Any) -> int | None:
    """One budget field as stored: None (no budget), or micros of a number in bounds."""
    if value is None:
        return None
    amount = _number(value, field, integer=False, lo=0, hi=MAX_BUDGET)
    return to_micros(amount)


def budgets_of_fields(fields: dict[str, Any]) -> Budgets:
    """Budget fields (API names) -> ``Budgets``, each checked (absent: none)."""
    return Budgets(*(check_budget(f, fields.get(f)) for f in BUDGET_FIELDS))


def budgets_view(record: ApiKeyRecord, currency: str = DEFAULT_CURRENCY) -> dict[str, Any]:
    """A key's budgets by period (null: none), in numbers of ``currency``."""
    view: dict[str, Any] = {
        api.removeprefix("budget_"): None
        if getattr(record, column) is None
        else money(getattr(record, column))
        for api, column in BUDGET_FIELDS.items()
    }
    return {**view, "currency": currency}


def spent_view(spent: Spent) -> dict[str, float]:
    return {
        "daily": money(spent.daily),
        "monthly": money(spent.monthly),
        "total": money(spent.total),
    }


def limits_of(record: ApiKeyRecord) -> dict[str, float | int | None]:
    """A key's own limits under the API's names (None: the gateway's default)."""
    return {api: getattr(record, column) for api, column in LIMIT_FIELDS.items()}


class KeyManager:
    def __init__(self, store: JobStore) -> None:
        self.store = store

    async def spent(self, key_id: str) -> Spent:
        """What the key has spent today, this month (UTC) and ever, with what its running
        jobs are estimated to cost (gateway/spend.py)."""
        return await self.store.spent(key_id, *day_and_month())

    async def create(
        self,
        name: Any,
        *,
        scopes: Any = None,
        limits: dict[str, Any] | None = None,
    ) -> tuple[str, ApiKeyRecord]:
        """A new key (the secret, shown once) and its stored record."""
        fields = dict(limits or {})
        budgets = budgets_of_fields({f: fields.pop(f) for f in BUDGET_FIELDS if f in fields})
        columns = check_limits(fields)
        key, record = new_key_record(
            check_name(name),
            scopes=check_scopes([] if scopes is None else scopes),
            limits=KeyLimits(**columns, budgets=budgets if budgets.any else None),
        )
        await self.store.create_key(record)
        return key, record

    async def list(self) -> list[ApiKeyRecord]:
        return await self.store.list_keys()

    async def get(self, key_id: str) -> ApiKeyRecord:
        record = await self.store.get_key(key_id) if KEY_ID.match(key_id) else None
        if record is None:
            raise NotFound(
                f"No stored API key with id '{key_id}'.", param="key_id", code="key_not_found"
            )
        return record

    async def update(self, key_id: str, changes: dict[str, Any]) -> ApiKeyRecord:
        """Change a key's name and limits (API names; a limit of None: back to the default)."""
        columns: dict[str, Any] = {}
        for field, value in changes.items():
            if field == "name":
                columns["name"] = check_name(value)
            elif field in LIMIT_FIELDS:
                columns[LIMIT_FIELDS[field]] = check_limit(field, value)
            elif field in BUDGET_FIELDS:
                columns[BUDGET_FIELDS[field]] = check_budget(field, value)
            else:
                raise InvalidRequest(
                    f"Unknown parameter '{field}'. A key's 'name', "
                    f"{', '.join(repr(f) for f in (*LIMIT_FIELDS, *BUDGET_FIELDS))} can change.",
                    param=field,
                    code="unknown_parameter",
                )
        record = await self.get(key_id)
        if record.revoked_at is not None:
            raise _revoked(key_id)
        updated = await self.store.update_key(key_id, columns)
        if updated is None:  # revoked in between
            raise _revoked(key_id)
        return updated

    async def revoke(self, key_id: str, *, keep_an_admin: bool = False) -> ApiKeyRecord:
        """Revoke a key (at once, on every replica); revoking a revoked key changes nothing.

        With ``keep_an_admin`` (the API), the last active admin key is not revoked (409):
        that would leave nobody able to manage keys over the API. The CLI may.
        """
        record = await self.get(key_id)
        if record.revoked_at is not None:
            return record
        # the store checks and revokes in one transaction: two admins revoking each other
        # at once cannot both pass the check (LastAdminKey, a 409, for the one that loses)
        await self.store.revoke_key(key_id, time.time(), keep_an_admin=keep_an_admin)
        return await self.get(key_id)


def _revoked(key_id: str) -> Conflict:
    return Conflict(
        f"Key {key_id} is revoked; a revoked key cannot change. Create a new key.",
        code="key_revoked",
    )
