"""Plain (thread-bound) sqlite3 pieces of the embedded store: the writer's connection, the
schema migrations it applies, and small helpers the store's modules share."""

from __future__ import annotations

import logging
import sqlite3
from collections.abc import Sequence
from typing import Any

import orjson

log = logging.getLogger("backserv.store")

#: a job that has ended, as SQL
FINISHED = "status IN ('COMPLETED', 'FAILED', 'CANCELLED')"


def dumps(value: Any) -> str:
    """A JSON column's text."""
    return orjson.dumps(value).decode()


def fetchall(conn: sqlite3.Connection, sql: str, params: Any = ()) -> list[Any]:
    return conn.execute(sql, params).fetchall()


def connect_writer(path: str) -> sqlite3.Connection:
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=NORMAL")
    conn.execute("PRAGMA busy_timeout=10000")
    return conn


def statements(script: str) -> list[str]:
    """The statements of ``script``, one by one (a trigger's body keeps its semicolons)."""
    found: list[str] = []
    pending = ""
    for piece in script.split(";"):
        pending += piece + ";"
        if sqlite3.complete_statement(pending):
            if pending.strip(" \n\t;"):
                found.append(pending.strip())
            pending = ""
    if pending.strip(" \n\t;"):
        found.append(pending.strip())
    return found


def migrate(conn: sqlite3.Connection, migrations: Sequence[str]) -> None:
    """Apply the migrations not applied yet (``PRAGMA user_version`` counts them)."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        version = int(conn.execute("PRAGMA user_version").fetchone()[0])
        for number, script in enumerate(migrations[version:], start=version + 1):
            log.info("applying schema migration %d", number)
            for statement in statements(script):
                conn.execute(statement)
            conn.execute(f"PRAGMA user_version = {number}")
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise
