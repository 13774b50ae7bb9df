"""The ``backserv`` command: ``serve`` (here), and ``run``, ``keys``, ``jobs``, ``models``
(gateway/commands/), ``doctor`` (gateway/doctor.py), ``--version``."""

from __future__ import annotations

import argparse
import asyncio
import functools
import signal
import sys
from collections.abc import Callable, Sequence
from importlib.metadata import PackageNotFoundError, version

from pydantic import ValidationError

from gateway.commands import jobs, keys, models, run, spend
from gateway.doctor import Doctor
from gateway.errors import ConfigError
from gateway.gc_policy import tune_for_serving
from gateway.observability.logs import configure_logging
from gateway.settings import Settings


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
    from gateway.app import create_app
    from gateway.edge import (
        AnnouncingServer,
        EdgeConfig,
        EdgeLimits,
        connection_cap,
        raise_fd_limit,
    )

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
    line = (
        f"Back.Serv listening on http://{settings.host}:{settings.port} "
        f"(public URL {settings.base_url}, database {without_password(settings.database_url)}; "
        f"at most {limits.max_connections} connections)"
    )
    # uvicorn re-raises a caught SIGTERM/SIGINT once it has shut down gracefully; with the
    # default handlers that kills the process (exit -15). Ours turns it into a clean exit 0.
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, _exit_cleanly)

    # "listening" only once the port is bound: a busy port must not have printed it first
    AnnouncingServer(config, functools.partial(_started, line)).run()
    return 0


def _started(line: str) -> None:
    """The server is up: its startup's objects are settled for good; say so."""
    tune_for_serving()
    print(line, file=sys.stderr, flush=True)


def without_password(url: str) -> str:
    """A database URL fit for a terminal: its password, if any, replaced by ``***``."""
    user, at, host = url.partition("://")[2].rpartition("@")
    if not at or ":" not in user:
        return url
    scheme = url.partition("://")[0]
    return f"{scheme}://{user.partition(':')[0]}:***@{host}"


def _exit_cleanly(signum: int, frame: object) -> None:
    raise SystemExit(0)


def _version() -> str:
    try:
        return version("backserv")
    except PackageNotFoundError:  # run from a source tree that was never installed
        return "unknown (not installed)"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="backserv", description="Back.Serv jobs gateway")
    parser.add_argument("--version", action="version", version=f"backserv {_version()}")
    sub = parser.add_subparsers(dest="cmd", required=True)
    serve = sub.add_parser("serve", help="run the gateway")
    serve.add_argument("--host", help="bind address (default BACKSERV_HOST or 0.0.0.0)")
    serve.add_argument("--port", type=int, help="port (default BACKSERV_PORT or 4093)")
    run.add_parser(sub)
    keys.add_parser(sub)
    jobs.add_parser(sub)
    models.add_parser(sub)
    spend.add_parsers(sub)
    sub.add_parser(
        "doctor", help="check settings, database, catalog, credentials, storage and public URL"
    )
    return parser


#: the commands that read the settings (and the database or catalog they name)
COMMANDS: dict[str, Callable[[Settings, argparse.Namespace], int]] = {
    "serve": cmd_serve,
    "keys": keys.command,
    "jobs": jobs.command,
    "models": models.command,
    **spend.COMMANDS,
}


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.cmd == "doctor":  # it reports bad settings itself, with the rest
        return asyncio.run(Doctor(sys.stdout).run())
    if args.cmd == "run":  # a client of a running gateway: no settings, no database
        return run.command(args)
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
