"""Persistence behind one small interface, so PostgreSQL can join SQLite later."""

from __future__ import annotations

from bot.store.base import NewOutboxRow, OutboxItem, Store, StoredResource
from bot.store.sqlite import SqliteStore

__all__ = ["NewOutboxRow", "OutboxItem", "SqliteStore", "Store", "StoredResource", "open_store"]


async def open_store(path: str) -> Store:
    """Open (and migrate) the store at `path`; one file holds all state."""
    store = SqliteStore(path)
    await store.open()
    return store
