"""The ``backserv`` command: ``serve``, ``keys create|list|update|revoke``,
``jobs list|show|cancel``, ``models``, ``doctor``."""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import signal
import sys
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import TypeVar

import orjson
from pydantic import ValidationError

from gateway.catalog import Catalog, load_catalog
from gateway.doctor import Doctor
from gateway.errors import ConfigError, GatewayError
from gateway.jobs import Job, Status
from gateway.keys import KeyManager, limits_of
from gateway.observability.logs import configure_logging
from gateway.service import JobService
from gateway.settings import Settings
from gateway.store import create_store
from gateway.store.base import ApiKeyRecord, JobStore
from providers.registry import KNOWN_PROVIDERS

T = TypeVar("T")


def _store(settings: Settings) -> JobStore:
    return create_store(settings.database_url)


async def _with_store(settings: Settings, fn: Callable[[JobStore], Awaitable[T]]) -> T:
    store = _store(settings)
    await store.open()
    try:
        return await fn(store)
    finally:
        await store.close()


def cmd_serve(settings: Settings, args: argparse.Namespace) -> int:
    if args.host:
        settings.host = args.host
    if args.port:
        settings.port = args.port
    undo_logging = configure_logging(settings.log_level, settings.log_format)
    try:
        return _serve(settings)
    finally:
        undo_logging()  # a serve that stopped, or never started, leaves logging as it was


def _serve(settings: Settings) -> int:
    import uvicorn

    from gateway.app import create_app
    from gateway.edge import EdgeConfig, EdgeLimits, connection_cap, raise_fd_limit

    app = create_app(settings)
    fd_limit = raise_fd_limit()
    limits = EdgeLimits(
        header_timeout=settings.header_timeout_seconds,
        max_header_bytes=settings.max_header_bytes,
        max_connections=connection_cap(settings.max_connections, fd_limit),
        running_per_key=settings.max_running_requests_per_key,
    )
    config = EdgeConfig(
        app,
        edge_limits=limits,
        host=settings.host,
        port=settings.port,
        loop="auto",
        lifespan="on",
        log_level=settings.log_level.lower(),
        log_config=None,  # uvicorn's loggers propagate to ours (configure_logging)
        timeout_graceful_shutdown=15,
        access_log=False,
    )
    print(
        f"Back.Serv listening on http://{settings.host}:{settings.port} "
        f"(public URL {settings.base_url}, database {settings.database_url}; "
        f"at most {limits.max_connections} connections)",
        file=sys.stderr,
        flush=True,
    )
    # uvicorn re-raises a caught SIGTERM/SIGINT once it has shut down gracefully; with the
    # default handlers that kills the process (exit -15). Ours turns it into a clean exit 0.
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, _exit_cleanly)
    uvicorn.Server(config).run()
    return 0


def _exit_cleanly(signum: int, frame: object) -> None:
    raise SystemExit(0)


def cmd_keys(settings: Settings, args: argparse.Namespace) -> int:
    """The same key management as ``/v1/keys`` (gateway/keys.py), against the database."""
    command = {
        "create": _keys_create,
        "list": _keys_list,
        "update": _keys_update,
        "revoke": _keys_revoke,
    }[args.keys_cmd]
    try:
        return asyncio.run(_with_store(settings, lambda store: command(KeyManager(store), args)))
    except GatewayError as exc:  # a bad value or an unknown key, said as the API says it
        print(f"backserv: {exc.message}", file=sys.stderr)
        return 1


def _given_limits(args: argparse.Namespace) -> dict[str, float | int | None]:
    """The limit options given on the command line, under the API's names."""
    given = vars(args)
    return {api: given[option] for option, api in _LIMIT_OPTIONS.items() if option in given}


async def _keys_create(keys: KeyManager, args: argparse.Namespace) -> int:
    scopes = ["admin"] if args.admin else []
    key, record = await keys.create(args.name, scopes=scopes, limits=_given_limits(args))
    print(f"Created key {record.id} ({record.name}). It is shown only this once:\n")
    print(f"    {key}\n")
    return 0


def _describe_limits(record: ApiKeyRecord) -> str:
    own = limits_of(record)
    parts = [f"{name}={value:g}" for name, value in own.items() if value is not None]
    return ",".join(parts) or "default-limits"


async def _keys_list(keys: KeyManager, args: argparse.Namespace) -> int:
    records = await keys.list()
    if not records:
        print("No stored keys (keys from BACKSERV_API_KEYS are not listed).")
    for r in records:
        state = "revoked" if r.revoked_at else "active"
        created = time.strftime("%Y-%m-%d %H:%M", time.localtime(r.created_at))
        print(
            f"{r.id}  {r.prefix}…  {state:8}  {created}  {r.scopes or '-':6}  "
            f"{_describe_limits(r)}  {r.name}"
        )
    return 0


async def _keys_update(keys: KeyManager, args: argparse.Namespace) -> int:
    changes: dict[str, object] = dict(_given_limits(args))
    if args.name is not None:
        changes["name"] = args.name
    if not changes:
        print("Nothing to change: give --name, --rate, --burst or --max-active.", file=sys.stderr)
        return 2
    record = await keys.update(args.key_id, changes)
    print(f"Updated {record.id}: {_describe_limits(record)}  {record.name}")
    return 0


async def _keys_revoke(keys: KeyManager, args: argparse.Namespace) -> int:
    record = await keys.get(args.key_id)
    if record.revoked_at is not None:
        print(f"{args.key_id} was already revoked.")
        return 0
    await keys.revoke(args.key_id)
    print(f"Revoked {args.key_id}.")
    return 0


def cmd_models(settings: Settings, args: argparse.Namespace) -> int:
    catalog = load_catalog(settings.catalog_path, KNOWN_PROVIDERS)
    for m in catalog:
        routes = " -> ".join(r.name for r in m.routes)
        flag = " (jobs only)" if m.jobs_only else ""
        print(f"{m.id:28} {m.kind.name:10} {routes}{flag}")
    return 0


JOBS_PAGE = 100


def cmd_jobs(settings: Settings, args: argparse.Namespace) -> int:
    """Jobs of every owner, through the same service the faces use. Its catalog is empty:
    these commands submit nothing, and must work whatever state the catalog file is in."""
    command = {"list": _jobs_list, "show": _jobs_show, "cancel": _jobs_cancel}[args.jobs_cmd]

    async def run(store: JobStore) -> int:
        try:
            return await command(JobService(store, Catalog([])), args)
        except GatewayError as exc:  # an unknown job, or one that cannot be cancelled
            print(f"backserv: {exc.message}", file=sys.stderr)
            return 1

    return asyncio.run(_with_store(settings, run))


async def _jobs_list(service: JobService, args: argparse.Namespace) -> int:
    status = Status(args.status) if args.status else None
    jobs: list[Job] = []
    after: str | None = None
    more = True
    while more and len(jobs) < args.limit:
        size = min(JOBS_PAGE, args.limit - len(jobs))
        page, more = await service.list(
            args.owner, limit=size, after=after, status=status, model=None
        )
        if not page:
            break
        jobs.extend(page)
        after = page[-1].id
        if more and len(jobs) < args.limit:  # a long listing shows that it is progressing
            print(f"read {len(jobs)} jobs...", file=sys.stderr, flush=True)
    if not jobs:
        print("No jobs.")
    for job in jobs:
        created = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(job.created_at))
        note = job.error.get("code", "") if job.error else f"{job.progress}%"
        print(
            f"{job.id}  {job.status.value:10}  {created}  {job.model:24} "
            f"{job.provider or job.lane:10} {job.owner:20} {note}"
        )
    if more:
        print(f"(more jobs follow; raise --limit past {args.limit})", file=sys.stderr)
    return 0


async def _jobs_show(service: JobService, args: argparse.Namespace) -> int:
    job = await service.get(None, args.job_id)
    document = dataclasses.asdict(job)
    document.update(
        provider=job.provider, retry_count=job.retry_count, fallback_used=job.fallback_used
    )
    print(orjson.dumps(document, option=orjson.OPT_INDENT_2, default=str).decode())
    return 0


async def _jobs_cancel(service: JobService, args: argparse.Namespace) -> int:
    was = (await service.get(None, args.job_id)).status
    job = await service.cancel(None, args.job_id)
    print(f"Cancelled {job.id} (it was {was.value}).")
    return 0


def _positive(value: str) -> int:
    number = int(value)
    if number < 1:
        raise argparse.ArgumentTypeError("must be at least 1")
    return number


#: option dest -> the limit's name in gateway/keys.py (and the API)
_LIMIT_OPTIONS = {
    "rate": "rate_limit_per_second",
    "burst": "rate_limit_burst",
    "max_active": "max_active_jobs",
}


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


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="backserv", description="Back.Serv jobs gateway")
    sub = parser.add_subparsers(dest="cmd", required=True)
    serve = sub.add_parser("serve", help="run the gateway")
    serve.add_argument("--host", help="bind address (default BACKSERV_HOST or 0.0.0.0)")
    serve.add_argument("--port", type=int, help="port (default BACKSERV_PORT or 4093)")
    keys = sub.add_parser("keys", help="manage API keys")
    keys_sub = keys.add_subparsers(dest="keys_cmd", required=True)
    create = keys_sub.add_parser("create", help="create a key and print it once")
    create.add_argument("--name", default="unnamed", help="a label for the key")
    create.add_argument("--admin", action="store_true", help="give the key the admin scope")
    _limit_arguments(create)
    keys_sub.add_parser("list", help="list stored keys (never the keys themselves)")
    update = keys_sub.add_parser(
        "update", help="change a key's name or its own limits ('default': the settings')"
    )
    update.add_argument("key_id")
    update.add_argument("--name", help="a new label")
    _limit_arguments(update)
    revoke = keys_sub.add_parser("revoke", help="revoke a key by its id")
    revoke.add_argument("key_id")
    jobs = sub.add_parser("jobs", help="list, show and cancel jobs of every owner (admin)")
    jobs_sub = jobs.add_subparsers(dest="jobs_cmd", required=True)
    listing = jobs_sub.add_parser("list", help="list jobs, newest first")
    listing.add_argument("--status", type=str.upper, choices=[s.value for s in Status])
    listing.add_argument("--limit", type=_positive, default=50, help="at most N (default 50)")
    listing.add_argument("--owner", metavar="KEY_ID", help="only this owner's jobs")
    show = jobs_sub.add_parser("show", help="print one job as JSON, with its attempts")
    show.add_argument("job_id")
    cancel = jobs_sub.add_parser(
        "cancel", help="cancel a queued or running job (a running gateway stops it)"
    )
    cancel.add_argument("job_id")
    sub.add_parser("models", help="list the catalog's models")
    sub.add_parser(
        "doctor", help="check settings, database, catalog, credentials, storage and public URL"
    )
    return parser


COMMANDS: dict[str, Callable[[Settings, argparse.Namespace], int]] = {
    "serve": cmd_serve,
    "keys": cmd_keys,
    "jobs": cmd_jobs,
    "models": cmd_models,
}


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.cmd == "doctor":  # it reports bad settings itself, with the rest
        return asyncio.run(Doctor(sys.stdout).run())
    try:
        settings = Settings()
        return COMMANDS[args.cmd](settings, args)
    except ValidationError as exc:
        err = exc.errors(include_url=False)[0]
        field = "BACKSERV_" + str(err["loc"][0]).upper() if err["loc"] else "settings"
        print(f"backserv: invalid setting {field}: {err['msg']}", file=sys.stderr)
        return 2
    except ConfigError as exc:
        print(f"backserv: {exc.message}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    raise SystemExit(main())
