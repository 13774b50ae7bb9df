"""The test PostgreSQL server: a connection to it, and throw-away databases on it.

``BACKSERV_TEST_POSTGRES_URL`` names it (default: the local ``test`` database). Without a
server the tests that need one skip, except in CI (``CI=true``), where they fail.
"""

from __future__ import annotations

import contextlib
import os
import secrets
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import pytest

URL = os.environ.get("BACKSERV_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test")


async def connect() -> Any:
    """A plain connection to the test database; skips the test (fails it in CI) without one."""
    try:
        return await asyncpg.connect(URL, timeout=5)
    except (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
        message = f"no PostgreSQL server answers at BACKSERV_TEST_POSTGRES_URL: {exc!r}"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)


@contextlib.asynccontextmanager
async def fresh_database() -> AsyncIterator[str]:
    """A new, empty database (dropped afterwards, connections and all); yields its URL."""
    admin = await connect()
    name = f"backserv_replicas_{secrets.token_hex(6)}"
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
        try:
            yield urlunsplit(urlsplit(URL)._replace(path="/" + name))
        finally:
            await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await admin.close()
