"""The commands that work on the database the settings name (keys, jobs) open it here."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TypeVar

from gateway.settings import Settings
from gateway.store import create_store
from gateway.store.base import JobStore

T = TypeVar("T")


async def with_store(settings: Settings, fn: Callable[[JobStore], Awaitable[T]]) -> T:
    """Run ``fn`` on an opened store, and close it whatever happens."""
    store = create_store(settings.database_url)
    await store.open()
    try:
        return await fn(store)
    finally:
        await store.close()
