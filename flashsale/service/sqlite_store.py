"""SQLite backend: the embedded default, one file in WAL mode.

One connection, used from the event loop thread only. Every statement of a
transaction runs without yielding to the loop (SQLite calls are synchronous and
take microseconds), so transactions never interleave and need no lock; the
payment gateway's wait happens between transactions. ``synchronous = NORMAL``
in WAL mode loses no committed transaction when the process is killed (only a
power cut can drop the last ones).
"""

from __future__ import annotations

import sqlite3
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from flashsale.service.sql import TABLES, SqlStore, Tx

__all__ = ["SqliteStore"]

_DDL = """
CREATE TABLE IF NOT EXISTS sale (id INTEGER PRIMARY KEY CHECK (id = 1), record TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS stock (
    channel TEXT PRIMARY KEY, units INTEGER NOT NULL,
    left_units INTEGER NOT NULL CHECK (left_units >= 0));
CREATE TABLE IF NOT EXISTS reservations (
    id INTEGER PRIMARY KEY, account INTEGER NOT NULL, channel TEXT NOT NULL,
    units INTEGER NOT NULL CHECK (units > 0), created_at REAL NOT NULL,
    expires_at REAL NOT NULL, status TEXT NOT NULL);
DROP INDEX IF EXISTS reservations_held;
CREATE INDEX IF NOT EXISTS reservations_live ON reservations (expires_at)
    WHERE status IN ('held', 'paying');
CREATE TABLE IF NOT EXISTS orders (
    id INTEGER PRIMARY KEY, reservation_id INTEGER NOT NULL UNIQUE, account INTEGER NOT NULL,
    channel TEXT NOT NULL, units INTEGER NOT NULL, created_at REAL NOT NULL,
    status TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS accounts (
    account INTEGER PRIMARY KEY, units INTEGER NOT NULL CHECK (units >= 0));
CREATE TABLE IF NOT EXISTS idempotency (
    key TEXT PRIMARY KEY, body_hash TEXT NOT NULL, claimed_at REAL NOT NULL,
    status INTEGER, reply TEXT);
"""


class _SqliteTx:
    __slots__ = ("_con",)

    def __init__(self, con: sqlite3.Connection) -> None:
        self._con = con

    async def run(self, sql: str, params: Sequence[Any] = ()) -> int:
        return self._con.execute(sql, params).rowcount

    async def one(self, sql: str, params: Sequence[Any] = ()) -> tuple[Any, ...] | None:
        row: tuple[Any, ...] | None = self._con.execute(sql, params).fetchone()
        return row

    async def all(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        return self._con.execute(sql, params).fetchall()


class SqliteStore(SqlStore):
    """The sale in one SQLite file."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._con: sqlite3.Connection | None = None

    async def setup(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        con = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        con.execute("PRAGMA journal_mode = WAL")
        con.execute("PRAGMA synchronous = NORMAL")
        con.execute("PRAGMA busy_timeout = 5000")
        con.executescript(_DDL)
        self._con = con

    async def close(self) -> None:
        if self._con is not None:
            self._con.close()
            self._con = None

    @asynccontextmanager
    async def _tx(self, snapshot: bool = False) -> AsyncIterator[Tx]:
        con = self._con
        if con is None:
            raise RuntimeError(f"{self.path}: store is not open (call setup() first)")
        con.execute("BEGIN" if snapshot else "BEGIN IMMEDIATE")
        try:
            yield _SqliteTx(con)
        except BaseException:
            con.execute("ROLLBACK")
            raise
        con.execute("COMMIT")

    async def _wipe(self, tx: Tx) -> None:
        for table in TABLES:
            await tx.run(f"DELETE FROM {table}")
