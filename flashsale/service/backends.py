"""Pick a storage backend from a ``--db`` value."""

from __future__ import annotations

from pathlib import Path

from flashsale.service.postgres_store import POOL_SIZE, PostgresStore
from flashsale.service.sqlite_store import SqliteStore
from flashsale.service.store import Store

__all__ = ["describe_db", "open_store"]


def open_store(db: str | Path, pool_size: int = POOL_SIZE) -> Store:
    """``postgresql://...`` (or ``postgres://``) -> PostgreSQL; ``sqlite:///path`` or a
    plain file path -> SQLite. The store still needs ``await store.setup()``."""
    text = str(db)
    if text.startswith(("postgresql://", "postgres://")):
        return PostgresStore(text, pool_size=pool_size)
    if text.startswith("sqlite:///"):
        return SqliteStore(text.removeprefix("sqlite:///"))
    if "://" in text:
        raise ValueError(
            f"--db {text!r}: expected postgresql://user@host:port/db, sqlite:///path or a file path"
        )
    return SqliteStore(text)


def describe_db(store: Store) -> str:
    """Where the data lives, for the startup line (no password)."""
    if isinstance(store, PostgresStore):
        return f"PostgreSQL schema {store.schema!r}"
    if isinstance(store, SqliteStore):
        return f"SQLite {store.path}"
    return type(store).__name__
