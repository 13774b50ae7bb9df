"""Job stores: pick the implementation from the database URL."""

from __future__ import annotations

from gateway.store.base import JobStore


def create_store(database_url: str) -> JobStore:
    """``sqlite:///path`` -> SQLite (embedded); ``postgresql://…`` -> PostgreSQL (replicas)."""
    if database_url.startswith("sqlite:///"):
        from gateway.store.sqlite import SQLiteJobStore

        return SQLiteJobStore(database_url[len("sqlite:///") :])
    if database_url.startswith(("postgresql://", "postgres://")):
        from gateway.store.postgres import PostgresJobStore

        return PostgresJobStore(database_url)
    raise ValueError(f"unsupported database URL scheme: {database_url.split(':', 1)[0]}")
