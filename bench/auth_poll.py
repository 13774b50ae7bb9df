"""CPU per poll with a stored key: a loop calling the ASGI app in-process (no HTTP, no server).

``python -m bench.auth_poll [--postgres URL] [--requests N] [--rounds R]``

It builds the gateway on a fresh SQLite file (or a fresh schema of the PostgreSQL database
at ``URL``, dropped afterwards), creates a stored key and one job of it, and calls
``GET /v1/jobs/{id}`` N times, R rounds, once with the stored key and once with a static key
(``BACKSERV_API_KEYS``, never looked up: the floor of what authentication can cost). It
prints the best round's CPU time (``time.process_time``) per request in microseconds, and
how many times the store's ``find_key`` ran. PostgreSQL's own CPU is not counted: the
figure is the gateway's.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import secrets
import sys
import tempfile
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from gateway.app import create_app
from gateway.auth import new_key_record
from gateway.settings import Settings
from gateway.store.base import JobStore

ROOT = Path(__file__).resolve().parent.parent
STATIC_KEY = "bench-static-key"


class _Sink:
    """An ASGI ``send`` that keeps the status of the response."""

    def __init__(self) -> None:
        self.status = 0

    async def __call__(self, message: dict[str, Any]) -> None:
        if message["type"] == "http.response.start":
            self.status = message["status"]


async def _receive() -> dict[str, Any]:
    return {"type": "http.request", "body": b"", "more_body": False}


def _scope(path: str, key: str) -> dict[str, Any]:
    return {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "GET",
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "root_path": "",
        "headers": [(b"host", b"bench"), (b"authorization", f"Bearer {key}".encode())],
        "client": ("127.0.0.1", 50000),
        "server": ("bench", 80),
    }


async def _poll_loop(app: Any, path: str, key: str, requests: int) -> float:
    """CPU seconds per request over ``requests`` polls (each must answer 200)."""
    sink = _Sink()
    start = time.process_time()
    for _ in range(requests):
        await app(_scope(path, key), _receive, sink)
        if sink.status != 200:
            raise RuntimeError(f"the poll answered {sink.status}")
    return (time.process_time() - start) / requests


@contextlib.asynccontextmanager
async def _database(postgres: str | None, folder: Path) -> AsyncIterator[tuple[str, str | None]]:
    """The database URL and, on PostgreSQL, a fresh schema (dropped afterwards)."""
    if postgres is None:
        yield f"sqlite:///{folder / 'bench.db'}", None
        return
    import asyncpg

    schema = f"backserv_bench_{secrets.token_hex(6)}"
    try:
        yield postgres, schema
    finally:
        conn = await asyncpg.connect(postgres, timeout=10)
        try:
            await conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
        finally:
            await conn.close()


async def measure(postgres: str | None, requests: int, rounds: int) -> dict[str, float]:
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        async with _database(postgres, folder) as (url, schema):
            settings = Settings(
                _env_file=None,
                database_url=url,
                storage_dir=folder / "files",
                catalog_path=ROOT / "catalog.toml",
                api_keys=STATIC_KEY,
                public_url="http://bench",
                log_level="warning",
            )
            store: JobStore | None = None
            if schema is not None:
                from gateway.store.postgres import PostgresJobStore

                store = PostgresJobStore(url, schema=schema)
            app = create_app(settings, store=store, start_scheduler=False)
            async with app.router.lifespan_context(app):
                gw = app.state.gateway
                for _ in range(500):  # PostgreSQL: keys are kept once the listener is up
                    if await gw.store.key_epoch() is not None:
                        break
                    await asyncio.sleep(0.02)
                key, record = new_key_record("bench")
                await gw.store.create_key(record)
                lookups = 0
                find_key = gw.store.find_key

                async def counted(digest: str) -> Any:
                    nonlocal lookups
                    lookups += 1
                    return await find_key(digest)

                gw.store.find_key = counted
                mine = f"/v1/jobs/{await _submit(app, key)}"
                theirs = f"/v1/jobs/{await _submit(app, STATIC_KEY)}"
                await _poll_loop(app, mine, key, 200)  # warm up: caches, statements
                await _poll_loop(app, theirs, STATIC_KEY, 200)
                stored, static = [], []
                lookups = 0
                for _ in range(rounds):
                    stored.append(await _poll_loop(app, mine, key, requests))
                    static.append(await _poll_loop(app, theirs, STATIC_KEY, requests))
                return {
                    "stored_us": min(stored) * 1e6,
                    "static_us": min(static) * 1e6,
                    "find_key_per_poll": lookups / (requests * rounds),
                }


async def _submit(app: Any, key: str) -> str:
    import httpx

    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://bench") as client:
        resp = await client.post(
            "/v1/jobs/images",
            json={"model": "sandbox-image", "prompt": "a bench"},
            headers={"Authorization": f"Bearer {key}"},
        )
        resp.raise_for_status()
        return str(resp.json()["id"])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--postgres", help="a PostgreSQL URL (default: SQLite)")
    parser.add_argument("--requests", type=int, default=5000)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args(argv)
    figures = asyncio.run(measure(args.postgres, args.requests, args.rounds))
    label = "PostgreSQL" if args.postgres else "SQLite"
    print(
        f"{label}: stored key {figures['stored_us']:.1f} µs/poll, static key "
        f"{figures['static_us']:.1f} µs/poll, find_key per stored-key poll "
        f"{figures['find_key_per_poll']:.2f}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
