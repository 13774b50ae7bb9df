"""``backserv doctor``: check a setup before serving it, and say what to do about each problem.

Six checks, in order, each printed as soon as it is done (``[2/6] ✓ database: ...``):
settings, database, catalog, provider credentials, storage (the directory, or the bucket:
a probe object written, read back and deleted), public URL. A line is
✓ (fine), ! (works, but probably not as meant) or ✗ (broken), and every ! and ✗ line is
followed by what to do. The exit code is 1 when any check failed, else 0; warnings do not
fail, with the rule ``/readyz`` follows: a route whose provider lacks credentials is a
warning, and only a catalog none of whose models can run is a failure.

Nothing is changed that ``serve`` would not change: the database is opened (which applies
pending migrations, as start-up does) only if it exists; a missing SQLite file or storage
directory is reported as "will be created", not created.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO
from urllib.parse import urlsplit

from pydantic import ValidationError

from gateway.catalog import Catalog, load_catalog
from gateway.errors import ConfigError, StorageUnavailable
from gateway.jobs import Status
from gateway.scheduler.availability import Availability, credential_report
from gateway.scheduler.breaker import Breakers
from gateway.settings import Settings
from gateway.storage import OutputSource, open_storage
from gateway.store import create_store
from providers.registry import KNOWN_PROVIDERS, build_providers

OPEN_TIMEOUT = 15.0
MARKS = {"ok": "✓", "warn": "!", "fail": "✗", "skip": "-"}
ASCII_MARKS = {"ok": "ok", "warn": "!", "fail": "X", "skip": "-"}
STEPS = ("settings", "database", "catalog", "providers", "storage", "public URL")


@dataclass(frozen=True)
class Result:
    status: str  # ok | warn | fail | skip
    detail: str
    fix: str | None = None


def redact(url: str) -> str:
    """``url`` without its password (database URLs are printed)."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@", 1)
    return parts._replace(netloc=netloc).geturl()


def _writable_dir(path: Path) -> Result:
    if path.exists():
        if not path.is_dir():
            return Result("fail", f"{path} exists and is not a directory")
        try:
            with tempfile.NamedTemporaryFile(dir=path, prefix=".doctor-"):
                pass
        except OSError as exc:
            return Result("fail", f"{path} is not writable ({exc.strerror})")
        return Result("ok", f"{path} is writable")
    ancestor = path.parent
    while not ancestor.exists():
        ancestor = ancestor.parent
    if not ancestor.is_dir() or not os.access(ancestor, os.W_OK | os.X_OK):
        return Result("fail", f"{path} does not exist and cannot be created under {ancestor}")
    return Result("ok", f"{path} does not exist yet; it will be created")


def check_settings(load: Callable[[], Settings]) -> tuple[Settings | None, Result]:
    try:
        settings = load()
    except ValidationError as exc:
        problems = []
        for err in exc.errors(include_url=False):
            name = "BACKSERV_" + str(err["loc"][0]).upper() if err["loc"] else "settings"
            problems.append(f"{name}: {err['msg']}")
        fix = "correct these variables (in the environment or .env); the README lists them"
        return None, Result("fail", "; ".join(problems), fix)
    return settings, Result("ok", "parsed from the environment and .env")


async def check_database(settings: Settings) -> Result:
    shown = redact(settings.database_url)
    if settings.database_url.startswith("sqlite:///"):
        path = settings.sqlite_path
        if not path.exists():
            where = _writable_dir(path.parent)
            if where.status != "ok":
                fix = "set BACKSERV_DATABASE_URL to a file in a writable directory"
                return Result("fail", f"{shown}: {where.detail}", fix)
            return Result("ok", f"{shown} does not exist yet; serve creates it")
    store = create_store(settings.database_url)
    try:
        await asyncio.wait_for(store.open(), OPEN_TIMEOUT)
        counts = await store.count_by_status_and_lane()
    except Exception as exc:
        fix = (
            "check that the server is up and the URL's host, user, password and database"
            if not settings.database_url.startswith("sqlite")
            else "check the file's path and permissions"
        )
        return Result("fail", f"{shown} cannot be opened: {type(exc).__name__}: {exc}", fix)
    finally:
        with contextlib.suppress(Exception):
            await store.close()
    queued = sum(n for (status, _), n in counts.items() if status is Status.QUEUED)
    running = sum(n for (status, _), n in counts.items() if status is Status.PROCESSING)
    return Result(
        "ok", f"{shown} opened, schema up to date ({queued} queued, {running} processing)"
    )


def check_catalog(settings: Settings) -> tuple[Catalog | None, Result]:
    try:
        catalog = load_catalog(settings.catalog_path, KNOWN_PROVIDERS)
    except ConfigError as exc:
        fix = "fix the file, or point BACKSERV_CATALOG_PATH at a valid catalog"
        return None, Result("fail", exc.message, fix)
    if len(catalog) == 0:
        return catalog, Result("fail", f"{settings.catalog_path} has no models", "add models")
    return catalog, Result("ok", f"{len(catalog)} models in {settings.catalog_path}")


async def check_providers(settings: Settings, catalog: Catalog) -> Result:
    # no preloading: the doctor asks whether a route could run, it does not load models
    providers = build_providers(settings.model_copy(update={"local_preload": ""}))
    try:
        report = credential_report(catalog, Availability(providers, Breakers()))
    finally:
        for provider in providers.values():
            await provider.aclose()
    if not report.routes_unavailable:
        return Result("ok", "every route's provider is configured")
    missing: dict[str, int] = {}
    for r in report.routes_unavailable:
        key = f"{r['route'].partition(':')[0]}: {r['reason']}"
        missing[key] = missing.get(key, 0) + 1
    detail = "; ".join(f"{reason} ({n} route{'s' * (n > 1)})" for reason, n in missing.items())
    if report.models_unavailable:
        detail += f"; models that cannot run: {', '.join(report.models_unavailable)}"
    fix = "set the credentials named, or remove those routes (or models) from the catalog"
    return Result("warn" if report.ok else "fail", detail, fix)


async def check_storage(settings: Settings) -> Result:
    if settings.bucket is not None:
        return await _check_bucket(settings)
    result = _writable_dir(settings.storage_dir)
    if result.status == "fail":
        fix = "create the directory, or set BACKSERV_STORAGE_DIR to a writable one"
        return Result("fail", result.detail, fix)
    return result


async def _check_bucket(settings: Settings) -> Result:
    """A probe object written, read back and deleted: reachable, credentials, permissions."""
    storage = open_storage(settings.bucket, settings.storage_dir, OutputSource(max_bytes=1))
    try:
        async with asyncio.timeout(OPEN_TIMEOUT):
            where = await storage.check()
    except StorageUnavailable as exc:
        fix = (
            "check BACKSERV_STORAGE_URL (the bucket must exist), BACKSERV_S3_ENDPOINT_URL, "
            "the region and the credentials (they need PutObject, GetObject, DeleteObject, "
            "ListBucket on the prefix)"
        )
        return Result("fail", exc.message, fix)
    except TimeoutError:
        return Result(
            "fail",
            f"{settings.storage_url} gave no answer within {OPEN_TIMEOUT:g} s",
            "check BACKSERV_S3_ENDPOINT_URL and that this machine can reach it",
        )
    finally:
        await storage.aclose()
    return Result("ok", f"{where}: a probe object was written, read back and deleted")


def check_public_url(settings: Settings) -> Result:
    url = settings.public_url
    if not url:
        return Result(
            "warn",
            f"BACKSERV_PUBLIC_URL is not set: result URLs point at {settings.base_url}",
            "set BACKSERV_PUBLIC_URL to the address clients reach, e.g. https://gen.example.com",
        )
    fix = "set BACKSERV_PUBLIC_URL to scheme://host[:port][/path], e.g. https://gen.example.com"
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises ValueError on a bad port
    except ValueError as exc:
        return Result("fail", f"{url!r} is not a URL ({exc})", fix)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return Result("fail", f"{url!r} needs an http(s) scheme and a host", fix)
    if parts.query or parts.fragment:
        return Result("fail", f"{url!r} must not have a query or fragment", fix)
    if parts.hostname in ("0.0.0.0", "::"):
        return Result("fail", f"{url!r} is a bind address; clients cannot reach it", fix)
    return Result("ok", f"result URLs start with {settings.base_url}")


class Doctor:
    def __init__(self, out: TextIO, load_settings: Callable[[], Settings] = Settings) -> None:
        self.out = out
        self.load_settings = load_settings
        try:  # a console or file that cannot take the check marks gets plain ones
            "".join(MARKS.values()).encode(getattr(out, "encoding", None) or "utf-8")
            self.marks = MARKS
        except (UnicodeEncodeError, LookupError):
            self.marks = ASCII_MARKS
        self.failed = 0
        self.warned = 0
        self._step = 0

    def report(self, name: str, result: Result) -> None:
        self._step += 1
        print(
            f"[{self._step}/{len(STEPS)}] {self.marks[result.status]} {name}: {result.detail}",
            file=self.out,
            flush=True,
        )
        if result.fix and result.status in ("warn", "fail"):
            print(f"      -> {result.fix}", file=self.out, flush=True)
        self.failed += result.status == "fail"
        self.warned += result.status == "warn"

    async def run(self) -> int:
        settings, result = check_settings(self.load_settings)
        self.report("settings", result)
        if settings is None:
            for name in STEPS[1:]:
                self.report(name, Result("skip", "skipped: the settings do not parse"))
        else:
            self.report("database", await check_database(settings))
            catalog, result = check_catalog(settings)
            self.report("catalog", result)
            if catalog is None:
                self.report("providers", Result("skip", "skipped: the catalog does not load"))
            else:
                self.report("providers", await check_providers(settings, catalog))
            self.report("storage", await check_storage(settings))
            self.report("public URL", check_public_url(settings))
        warned = f" ({self.warned} warning{'s' * (self.warned != 1)})" if self.warned else ""
        if self.failed:
            print(f"{self.failed} problem(s) found{warned}.", file=self.out)
            return 1
        print(f"All checks passed{warned}.", file=self.out)
        return 0
