"""Target 6: targets 1, 2 and 3 with PostgreSQL as the store, on one replica and on two.

Every part runs on a database of its own, created for it and dropped afterwards (``WITH
(FORCE)``, connections and all), on the server ``--postgres-url`` names. Two replicas are
two ``backserv serve`` processes on one database; wrk and the end-to-end client split their
load between them (and targets 1 and 2 compare them with two bare apps loaded the same way).
The scaling factor is the two-replica figure over the one-replica figure, both on
PostgreSQL.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

from bench.e2e import E2E, bench_e2e
from bench.http_targets import Figure, bench_http
from bench.servers import gateway_env, say
from bench.wrk import Load


async def _admin(admin_url: str, sql: str) -> None:
    import asyncpg

    conn = await asyncpg.connect(admin_url, timeout=10)
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


def reachable(admin_url: str) -> str | None:
    """None when the server answers; else why not."""
    try:
        asyncio.run(_admin(admin_url, "SELECT 1"))
    except Exception as exc:
        return f"{type(exc).__name__}: {exc}"
    return None


@contextlib.contextmanager
def fresh_database(admin_url: str) -> Iterator[str]:
    """A new, empty database, dropped afterwards; yields its URL."""
    name = f"backserv_bench_{secrets.token_hex(6)}"
    asyncio.run(_admin(admin_url, f'CREATE DATABASE "{name}"'))
    say(f"  created the database {name}")
    try:
        yield urlunsplit(urlsplit(admin_url)._replace(path="/" + name))
    finally:
        asyncio.run(_admin(admin_url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        say(f"  dropped the database {name}")


@dataclass
class PgRun:
    replicas: int
    http: list[Figure]
    e2e: E2E


def _pg_env(database_url: str, workdir: Path, **extra: str) -> dict[str, str]:
    return gateway_env(
        BACKSERV_DATABASE_URL=database_url,
        BACKSERV_SECRET_KEY=secrets.token_hex(32),  # replicas share it, and the files
        BACKSERV_STORAGE_DIR=str(workdir / "shared-files"),
        **extra,
    )


def bench_pg_run(
    workdir: Path,
    admin_url: str,
    load: Load,
    rounds: int,
    jobs: int,
    concurrency: int,
    timeout: float,
    replicas: int,
) -> PgRun:
    label = f"PostgreSQL, {replicas} replica{'s' if replicas > 1 else ''}"
    say(f"target 6 ({label}): targets 1 and 2")
    with fresh_database(admin_url) as url:
        hold = _pg_env(url, workdir / "http", BACKSERV_PROVIDER_CONCURRENCY='{"sandbox": 0}')
        http = bench_http(workdir / "http", load, rounds, hold, replicas=replicas)
    say(f"target 6 ({label}): {jobs} jobs end to end")
    with fresh_database(admin_url) as url:
        env = _pg_env(url, workdir / "e2e")
        e2e = bench_e2e(workdir / "e2e", env, jobs, concurrency, timeout, replicas=replicas)
    return PgRun(replicas, http, e2e)


def pg_lines(one: PgRun, two: PgRun | None, jobs: int) -> list[str]:
    out = ["6. PostgreSQL as the store (a fresh database per part, dropped after it):"]
    for run in (one, two):
        if run is None:
            continue
        name = f"{run.replicas} replica{'s' if run.replicas > 1 else ''}"
        out.append(f"   - {name}:")
        out += [f.line("     - ") for f in run.http]
        out.append(run.e2e.line("     - End to end, ", jobs))
    if two is not None:
        factors = [
            f"`{a.name}` **{b.rps / a.rps:.2f}x** ({a.rps:,.0f} → {b.rps:,.0f} req/s)"
            for a, b in zip(one.http, two.http, strict=True)
        ]
        e1, e2 = one.e2e.jobs_per_second, two.e2e.jobs_per_second
        factors.append(f"end to end **{e2 / e1:.2f}x** ({e1:,.0f} → {e2:,.0f} jobs/s)")
        out.append(
            "   - Scaling factor, 2 replicas over 1 (both on PostgreSQL, same machine: the two "
            "replicas, PostgreSQL and the load generator share its cores): "
            + "; ".join(factors)
            + "."
        )
    return out
