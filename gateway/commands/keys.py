"""``backserv keys create|list|update|revoke``: the key management of ``/v1/keys``
(gateway/keys.py), against the database."""

from __future__ import annotations

import argparse
import asyncio
from typing import Any

from gateway.commands.database import with_store
from gateway.commands.output import local_time, note, print_json, print_table
from gateway.errors import GatewayError
from gateway.keys import KeyManager, limits_of
from gateway.settings import Settings
from gateway.store.base import ApiKeyRecord

#: option dest -> the limit's name in gateway/keys.py (and the API)
LIMIT_OPTIONS = {
    "rate": "rate_limit_per_second",
    "burst": "rate_limit_burst",
    "max_active": "max_active_jobs",
}


def add_parser(sub: Any) -> None:
    keys = sub.add_parser("keys", help="manage API keys")
    keys_sub = keys.add_subparsers(dest="keys_cmd", required=True)
    create = keys_sub.add_parser("create", help="create a key and print it once")
    create.add_argument("--name", default="unnamed", help="a label for the key")
    create.add_argument("--admin", action="store_true", help="give the key the admin scope")
    _limit_arguments(create)
    listing = keys_sub.add_parser("list", help="list stored keys (never the keys themselves)")
    listing.add_argument("--json", action="store_true", help="print the keys as JSON")
    update = keys_sub.add_parser(
        "update", help="change a key's name or its own limits ('default': the settings')"
    )
    update.add_argument("key_id")
    update.add_argument("--name", help="a new label")
    _limit_arguments(update)
    revoke = keys_sub.add_parser("revoke", help="revoke a key by its id")
    revoke.add_argument("key_id")


def command(settings: Settings, args: argparse.Namespace) -> int:
    run = {"create": _create, "list": _list, "update": _update, "revoke": _revoke}[args.keys_cmd]
    try:
        return asyncio.run(with_store(settings, lambda store: run(KeyManager(store), args)))
    except GatewayError as exc:  # a bad value or an unknown key, said as the API says it
        note(f"backserv: {exc.message}")
        return 1


def _limit(text: str) -> float | int | None:
    """A limit on the command line: a number, or ``default`` (the settings' value)."""
    if text.strip().lower() == "default":
        return None
    try:
        return int(text)
    except ValueError:
        pass
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError("must be a number or 'default'") from None


def _limit_arguments(parser: argparse.ArgumentParser) -> None:
    """The key's own limits; an option left out keeps what the key has (SUPPRESS)."""
    for flag, what in (
        ("--rate", "job creations per second (0: no rate limit for this key)"),
        ("--burst", "the token bucket's size"),
        ("--max-active", "jobs queued or processing at once (0: no cap for this key)"),
    ):
        parser.add_argument(flag, type=_limit, default=argparse.SUPPRESS, help=what)


def _given_limits(args: argparse.Namespace) -> dict[str, float | int | None]:
    """The limit options given on the command line, under the API's names."""
    given = vars(args)
    return {api: given[option] for option, api in LIMIT_OPTIONS.items() if option in given}


def describe_limits(record: ApiKeyRecord) -> str:
    own = limits_of(record)
    parts = [f"{name}={value:g}" for name, value in own.items() if value is not None]
    return ",".join(parts) or "default-limits"


def key_document(record: ApiKeyRecord) -> dict[str, Any]:
    """A stored key as ``GET /v1/keys/{id}`` shows it: never its secret or hash."""
    return {
        "id": record.id,
        "name": record.name,
        "prefix": record.prefix,
        "scopes": record.scopes.split() if record.scopes else [],
        "status": "revoked" if record.revoked_at else "active",
        "created_at": int(record.created_at),
        "revoked_at": None if record.revoked_at is None else int(record.revoked_at),
        "limits": limits_of(record),
    }


async def _create(keys: KeyManager, args: argparse.Namespace) -> int:
    scopes = ["admin"] if args.admin else []
    key, record = await keys.create(args.name, scopes=scopes, limits=_given_limits(args))
    print(f"Created key {record.id} ({record.name}). It is shown only this once:\n")
    print(f"    {key}\n")
    return 0


async def _list(keys: KeyManager, args: argparse.Namespace) -> int:
    records = await keys.list()
    if args.json:
        print_json([key_document(r) for r in records])
        return 0
    if not records:
        print("No stored keys (keys from BACKSERV_API_KEYS are not listed).")
        return 0
    print_table(
        ("ID", "PREFIX", "STATUS", "CREATED", "SCOPES", "LIMITS", "NAME"),
        [
            (
                r.id,
                f"{r.prefix}…",
                "revoked" if r.revoked_at else "active",
                local_time(r.created_at),
                r.scopes or "-",
                describe_limits(r),
                r.name,
            )
            for r in records
        ],
    )
    return 0


async def _update(keys: KeyManager, args: argparse.Namespace) -> int:
    changes: dict[str, object] = dict(_given_limits(args))
    if args.name is not None:
        changes["name"] = args.name
    if not changes:
        note("Nothing to change: give --name, --rate, --burst or --max-active.")
        return 2
    record = await keys.update(args.key_id, changes)
    print(f"Updated {record.id}: {describe_limits(record)}  {record.name}")
    return 0


async def _revoke(keys: KeyManager, args: argparse.Namespace) -> int:
    record = await keys.get(args.key_id)
    if record.revoked_at is not None:
        print(f"{args.key_id} was already revoked.")
        return 0
    await keys.revoke(args.key_id)
    print(f"Revoked {args.key_id}.")
    return 0
