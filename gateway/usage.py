"""Usage reports: what keys spent, from the usage ledger (one row per priced attempt).

The one implementation behind ``GET /v1/usage`` (gateway/api/usage.py), the web console's
usage page and ``backserv usage`` (gateway/cli.py). A report sums the ledger over a range of
UTC days, grouped by any of ``day``, ``model``, ``provider`` and ``key``; its total equals the
sum of the ``usage.cost`` of the jobs it covers (each finished job's attempts are in the
ledger once; a job still running is not in it yet).
"""

from __future__ import annotations

import csv
import io
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, timedelta
from typing import Any

from gateway.errors import InvalidRequest
from gateway.pricing import money
from gateway.spend import Budgets, Spent, UsageBucket, day_and_month
from gateway.store.base import JobStore

GROUPS = ("day", "model", "provider", "key")
DEFAULT_GROUPS = ("day", "model", "provider")
DEFAULT_DAYS = 30


def parse_day(value: str | None, param: str, default: str) -> str:
    """A ``YYYY-MM-DD`` day, checked; ``default`` when absent."""
    if value is None:
        return default
    if len(value) != 10:
        return _bad(param)
    try:
        return date.fromisoformat(value).isoformat()
    except ValueError:
        return _bad(param)


def _bad(param: str) -> str:
    raise InvalidRequest(
        f"Invalid '{param}': must be a day as YYYY-MM-DD (UTC).", param=param, code="invalid_value"
    )


def parse_groups(value: str | None) -> tuple[str, ...]:
    """``day,model`` -> ``("day", "model")``; every name one of ``GROUPS``."""
    if value is None:
        return DEFAULT_GROUPS
    names = tuple(dict.fromkeys(n.strip() for n in value.split(",") if n.strip()))
    unknown = [n for n in names if n not in GROUPS] or ([] if names else [value])
    if unknown:
        raise InvalidRequest(
            f"Invalid 'group_by': unknown grouping '{unknown[0]}' (known: {', '.join(GROUPS)}).",
            param="group_by",
            code="invalid_value",
        )
    return names


def day_range(start: str | None, end: str | None) -> tuple[str, str]:
    """The checked range (inclusive); by default the last ``DEFAULT_DAYS`` days to today.
    The ledger is read by its index on the day, so any range costs what it holds."""
    today = day_and_month(time.time())[0]
    end_day = parse_day(end, "end", today)
    default_start = (date.fromisoformat(end_day) - timedelta(days=DEFAULT_DAYS - 1)).isoformat()
    start_day = parse_day(start, "start", default_start)
    return start_day, end_day  # a start after the end is a range of no day: an empty report


@dataclass(frozen=True)
class UsageLine:
    """One line of a report: the grouping's values (absent names: every value) and sums."""

    groups: dict[str, str]
    cost: int
    attempts: int

    def to_dict(self) -> dict[str, Any]:
        return {**self.groups, "cost": money(self.cost), "attempts": self.attempts}


@dataclass(frozen=True)
class UsageReport:
    start: str
    end: str
    group_by: tuple[str, ...]
    currency: str
    lines: list[UsageLine]

    @property
    def total(self) -> int:
        return sum(line.cost for line in self.lines)

    def to_dict(self) -> dict[str, Any]:
        return {
            "object": "usage",
            "start": self.start,
            "end": self.end,
            "group_by": list(self.group_by),
            "currency": self.currency,
            "total": money(self.total),
            "data": [line.to_dict() for line in self.lines],
        }

    def to_csv(self) -> str:
        out = io.StringIO()
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow([*self.group_by, "cost", "currency", "attempts"])
        for line in self.lines:
            values = [line.groups[g] for g in self.group_by]
            writer.writerow([*values, f"{money(line.cost):.6f}", self.currency, line.attempts])
        return out.getvalue()


def _group(buckets: Sequence[UsageBucket], group_by: tuple[str, ...]) -> list[UsageLine]:
    sums: dict[tuple[str, ...], list[int]] = {}
    for b in buckets:
        values = {"day": b.day, "model": b.model, "provider": b.provider, "key": b.owner}
        key = tuple(values[g] for g in group_by)
        found = sums.setdefault(key, [0, 0])
        found[0] += b.cost
        found[1] += b.attempts
    return [
        UsageLine(dict(zip(group_by, key, strict=True)), cost, attempts)
        for key, (cost, attempts) in sorted(sums.items())
    ]


class Usage:
    def __init__(self, store: JobStore, currency: str) -> None:
        self.store = store
        self.currency = currency

    async def report(
        self,
        owner: str | None,
        *,
        start: str | None = None,
        end: str | None = None,
        group_by: str | None = None,
    ) -> UsageReport:
        """``owner``'s usage (every key's with None), from raw query values (checked)."""
        start_day, end_day = day_range(start, end)
        groups = parse_groups(group_by)
        buckets = await self.store.usage(owner, start_day, end_day)
        return UsageReport(start_day, end_day, groups, self.currency, _group(buckets, groups))

    async def spent(self, owner: str) -> Spent:
        return await self.store.spent(owner, *day_and_month())

    def budget_view(self, budgets: Budgets | None, spent: Spent) -> dict[str, Any]:
        """A key's budgets and what counts against them (spent, and the estimates of its
        running jobs), by period, in numbers of the currency."""
        own = budgets or Budgets()
        return {
            period: {
                "budget": None if budget is None else money(budget),
                "spent": money(so_far),
            }
            for period, budget, so_far in (
                ("daily", own.daily, spent.daily),
                ("monthly", own.monthly, spent.monthly),
                ("total", own.total, spent.total),
            )
        }
