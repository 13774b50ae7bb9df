"""The spend commands of ``backserv``: ``usage`` and ``budget``, against the database.

- ``backserv usage [--key KEY_ID] [--start DAY] [--end DAY] [--group-by day,model,provider]
  [--csv]``: what keys spent (every key's by default), as ``GET /v1/usage`` reports it.
- ``backserv budget show KEY_ID``: the key's budgets and what counts against them.
- ``backserv budget set KEY_ID [--daily N] [--monthly N] [--total N]``: set budgets
  (``none``: no budget for that period), as ``PATCH /v1/keys/{id}`` does.

``gateway/cli.py`` adds these parsers (``add_parsers``) and ``COMMANDS`` to its own.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Awaitable, Callable
from typing import Any

from gateway.catalog import load_catalog
from gateway.commands.output import print_table
from gateway.errors import GatewayError
from gateway.keys import KeyManager, check_budget
from gateway.settings import Settings
from gateway.store import create_store
from gateway.store.base import JobStore
from gateway.usage import Usage, UsageReport
from providers.registry import KNOWN_PROVIDERS

_PERIODS = ("daily", "monthly", "total")


def _run(settings: Settings, fn: Callable[[JobStore, str], Awaitable[int]]) -> int:
    currency = load_catalog(settings.catalog_path, KNOWN_PROVIDERS).currency

    async def go() -> int:
        store = create_store(settings.database_url)
        await store.open()
        try:
            return await fn(store, currency)
        finally:
            await store.close()

    try:
        return asyncio.run(go())
    except GatewayError as exc:  # a bad value or an unknown key, said as the API says it
        print(f"backserv: {exc.message}", file=sys.stderr)
        return 1


def _print_table(report: UsageReport) -> None:
    columns = [*report.group_by, f"cost ({report.currency})", "attempts"]
    rows = [
        [*(line.groups[g] for g in report.group_by), f"{line.cost / 1e6:.6f}", str(line.attempts)]
        for line in report.lines
    ]
    rows.append([*([""] * len(report.group_by)), f"{report.total / 1e6:.6f}", "total"])
    print_table(columns, rows)


def cmd_usage(settings: Settings, args: argparse.Namespace) -> int:
    async def run(store: JobStore, currency: str) -> int:
        report = await Usage(store, currency).report(
            args.key, start=args.start, end=args.end, group_by=args.group_by
        )
        if args.csv:
            print(report.to_csv(), end="")
        else:
            _print_table(report)
        return 0

    return _run(settings, run)


def _budget_value(text: str) -> float | None:
    if text.strip().lower() == "none":
        return None
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError("must be a number or 'none'") from None


def cmd_budget(settings: Settings, args: argparse.Namespace) -> int:
    async def run(store: JobStore, currency: str) -> int:
        keys = KeyManager(store)
        if args.budget_cmd == "set":
            given = vars(args)
            changes: dict[str, Any] = {f"budget_{p}": given[p] for p in _PERIODS if p in given}
            if not changes:
                print("Nothing to change: give --daily, --monthly or --total.", file=sys.stderr)
                return 2
            for field, value in changes.items():
                check_budget(field, value)
            await keys.update(args.key_id, changes)
        record = await keys.get(args.key_id)
        usage = Usage(store, currency)
        view = usage.budget_view(record.budgets, await usage.spent(record.id))
        for period, figures in view.items():
            budget = "none" if figures["budget"] is None else f"{figures['budget']:g}"
            print(f"{period:8} budget {budget:>12}  spent {figures['spent']:g} {currency}")
        return 0

    return _run(settings, run)


def add_parsers(sub: Any) -> None:
    """Add ``usage`` and ``budget`` to ``backserv``'s subcommands."""
    usage = sub.add_parser("usage", help="what keys spent, by day, model and provider")
    usage.add_argument("--key", metavar="KEY_ID", help="one key's usage (default: every key's)")
    usage.add_argument("--start", metavar="YYYY-MM-DD", help="first day (UTC; default 30 days ago)")
    usage.add_argument("--end", metavar="YYYY-MM-DD", help="last day (UTC; default today)")
    usage.add_argument("--group-by", default=None, help="day,model,provider,key (a comma list)")
    usage.add_argument("--csv", action="store_true", help="print CSV")
    budget = sub.add_parser("budget", help="show or set a key's budgets")
    budget_sub = budget.add_subparsers(dest="budget_cmd", required=True)
    show = budget_sub.add_parser("show", help="a key's budgets and what it spent")
    show.add_argument("key_id")
    set_ = budget_sub.add_parser("set", help="set a key's budgets ('none': no budget)")
    set_.add_argument("key_id")
    for period in _PERIODS:
        set_.add_argument(
            f"--{period}",
            type=_budget_value,
            default=argparse.SUPPRESS,
            help=f"the {period} budget, in the catalog's currency",
        )


COMMANDS: dict[str, Callable[[Settings, argparse.Namespace], int]] = {
    "usage": cmd_usage,
    "budget": cmd_budget,
}
