"""The stand-in shops' books: one SQLite file per shop, its audit and its reset.

Both example shops (:mod:`examples.shops.coded_shop`, :mod:`examples.shops.cookie_shop`)
keep their sale in a SQLite file (WAL, so the audit and the reset below can run in
another process while the shop serves). A shop reads the sale (units, stock, opening
time) from the file on every request, so a reset made here takes effect at once.

Command line (run from the checkout's root)::

    python -m examples.shops.books audit --db FILE
    python -m examples.shops.books reset --db FILE --units U [--opens-in-s X]

``audit`` prints one JSON object (:func:`audit`); ``reset`` starts a new sale in the
books (:func:`reset`) and prints the new sale as JSON. Both exit 2 on a file that holds
no shop's books.

This module also holds the plumbing both shops share: opening the file, one
transaction helper and the loopback-only server (:func:`serve`).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import socket
import sqlite3
import sys
import time
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

__all__ = [
    "HOST",
    "SHOPS",
    "BooksError",
    "Sale",
    "audit",
    "bind",
    "connect",
    "immediate",
    "main",
    "read_sale",
    "reset",
    "serve",
    "start_sale",
]

HOST = "127.0.0.1"
"""The only address the shops bind: they are test stand-ins, never public."""

SHOPS = ("coded", "cookie")
"""The kinds of books: which shop wrote them (stored in the ``sale`` row)."""

ShopKind = Literal["coded", "cookie"]

BUSY_TIMEOUT_MS = 10_000
"""How long a writer waits for another process's write lock (e.g. a reset), in ms."""

SOLD_STATUSES = ("paid", "placed")
"""Order statuses whose units count as sold: the coded shop's ``paid`` orders and the
cookie shop's ``placed`` ones. The coded shop's ``reserved`` orders are not sold."""

_SCHEMA = """
CREATE TABLE IF NOT EXISTS sale (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    shop TEXT NOT NULL,          -- 'coded' | 'cookie'
    sku TEXT NOT NULL,           -- the one product on sale (cookie shop: its id, digits)
    units INTEGER NOT NULL,      -- units offered by this sale
    stock INTEGER NOT NULL,      -- units left; the cookie shop can drive it below zero
    opens_at REAL NOT NULL       -- Unix time (s) the sale opens
);
CREATE TABLE IF NOT EXISTS orders (
    order_no TEXT PRIMARY KEY,
    owner TEXT NOT NULL,         -- coded: the user name; cookie: the session id
    sku TEXT NOT NULL,
    qty INTEGER NOT NULL,        -- units
    status TEXT NOT NULL,        -- coded: 'reserved' | 'paid'; cookie: 'placed'
    created_at REAL NOT NULL,    -- Unix time (s)
    paid_at REAL                 -- Unix time (s); coded shop only
);
CREATE INDEX IF NOT EXISTS orders_owner ON orders (owner);
CREATE TABLE IF NOT EXISTS tokens (
    token TEXT PRIMARY KEY,
    user TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS baskets (
    id INTEGER PRIMARY KEY AUTOINCREMENT,  -- never reused, not even across resets
    session TEXT NOT NULL,
    status TEXT NOT NULL         -- 'open' | 'frozen' (checking out) | 'submitted'
);
CREATE INDEX IF NOT EXISTS baskets_session ON baskets (session, status);
CREATE TABLE IF NOT EXISTS basket_lines (
    basket_id INTEGER NOT NULL,
    sku TEXT NOT NULL,
    quantity INTEGER NOT NULL,   -- units
    PRIMARY KEY (basket_id, sku)
);
"""


class BooksError(RuntimeError):
    """The file holds no books, or another shop's books (a user error: exit 2)."""


@dataclass(frozen=True)
class Sale:
    """The sale row: ``units`` offered, ``stock`` left (may be < 0 in the cookie shop),
    ``opens_at`` in Unix seconds."""

    shop: ShopKind
    sku: str
    units: int
    stock: int
    opens_at: float

    def opens_in_s(self, now: float | None = None) -> float:
        """Seconds until the sale opens (0 once it is open)."""
        return max(0.0, self.opens_at - (time.time() if now is None else now))


def connect(db: str | Path, *, create: bool = True) -> sqlite3.Connection:
    """A connection in autocommit mode (transactions are explicit: :func:`immediate`),
    WAL, waiting up to :data:`BUSY_TIMEOUT_MS` for another writer. ``create`` False
    refuses a file that does not exist (:class:`BooksError`)."""
    if not create and not Path(db).is_file():
        raise BooksError(f"{db}: no such file (start a shop with --db {db} first)")
    con = sqlite3.connect(
        str(db), isolation_level=None, check_same_thread=False, timeout=BUSY_TIMEOUT_MS / 1000
    )
    con.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
    con.execute("PRAGMA journal_mode = WAL")
    con.execute("PRAGMA synchronous = NORMAL")
    con.executescript(_SCHEMA)
    return con


@contextlib.contextmanager
def immediate(con: sqlite3.Connection) -> Iterator[sqlite3.Connection]:
    """One write transaction (``BEGIN IMMEDIATE``: the write lock is taken up front, so
    what it reads stays true until it commits); rolled back on any exception."""
    con.execute("BEGIN IMMEDIATE")
    try:
        yield con
    except BaseException:
        con.execute("ROLLBACK")
        raise
    con.execute("COMMIT")


def read_sale(con: sqlite3.Connection) -> Sale:
    """The sale in the books (:class:`BooksError` when there is none)."""
    row = con.execute("SELECT shop, sku, units, stock, opens_at FROM sale WHERE id = 1").fetchone()
    if row is None:
        raise BooksError("no sale in these books (start a shop with --db FILE first)")
    return Sale(row[0], str(row[1]), int(row[2]), int(row[3]), float(row[4]))


def _clear(con: sqlite3.Connection) -> None:
    for table in ("orders", "tokens", "basket_lines", "baskets"):
        con.execute(f"DELETE FROM {table}")


def start_sale(
    con: sqlite3.Connection, shop: ShopKind, sku: str, units: int, opens_in_s: float
) -> Sale:
    """A new sale of ``units`` of ``sku`` opening ``opens_in_s`` seconds from now (< 0:
    opened that long ago); what
    the books held before (orders, tokens, baskets) is cleared. Refuses books another
    kind of shop wrote (:class:`BooksError`)."""
    if units < 0:
        raise BooksError(f"units {units}: must be >= 0")
    with immediate(con):
        row = con.execute("SELECT shop FROM sale WHERE id = 1").fetchone()
        if row is not None and row[0] != shop:
            raise BooksError(f"these books are the {row[0]} shop's, not the {shop} shop's")
        _clear(con)
        con.execute(
            "INSERT OR REPLACE INTO sale (id, shop, sku, units, stock, opens_at) "
            "VALUES (1, ?, ?, ?, ?, ?)",
            (shop, sku, units, units, time.time() + opens_in_s),
        )
    return read_sale(con)


def reset(con: sqlite3.Connection, units: int, opens_in_s: float) -> Sale:
    """A new sale in existing books (same shop, same product): ``units`` offered,
    opening ``opens_in_s`` seconds from now; orders, login tokens and baskets are
    cleared, so clients log in (coded) or fetch the product page (cookie) again.
    Safe while the shop runs: it reads the sale from the books on every request."""
    sale = read_sale(con)
    return start_sale(con, sale.shop, sale.sku, units, opens_in_s)


def audit(con: sqlite3.Connection) -> dict[str, Any]:
    """The shop's own count of the sale, in units and orders::

        {"shop": "coded"|"cookie", "units": U, "units_sold": S, "units_reserved": R,
         "stock_left": L, "orders": N, "oversold_units": max(0, S - U)}

    ``units_sold``/``orders``: units in, and number of, sold orders (coded: paid;
    cookie: placed at checkout). ``units_reserved``: coded shop orders created and
    not paid (always 0 in the cookie shop). ``stock_left``: the stock counter as the
    shop keeps it (coded: U - S - R, never < 0; cookie: U - S, below zero once it
    oversold).
    """
    sale = read_sale(con)
    marks = ",".join("?" * len(SOLD_STATUSES))
    sold_units, sold_orders = con.execute(
        f"SELECT COALESCE(SUM(qty), 0), COUNT(*) FROM orders WHERE status IN ({marks})",
        SOLD_STATUSES,
    ).fetchone()
    (reserved,) = con.execute(
        "SELECT COALESCE(SUM(qty), 0) FROM orders WHERE status = 'reserved'"
    ).fetchone()
    return {
        "shop": sale.shop,
        "units": sale.units,
        "units_sold": int(sold_units),
        "units_reserved": int(reserved),
        "stock_left": sale.stock,
        "orders": int(sold_orders),
        "oversold_units": max(0, int(sold_units) - sale.units),
    }


# --- serving (shared by both shops) ----------------------------------------------------


def bind(host: str, port: int) -> socket.socket:
    """A listening socket on ``host`` (which must be :data:`HOST`: ValueError otherwise);
    ``port`` 0 picks a free port. Listening before the server starts means an early
    client waits in the backlog instead of being refused."""
    if host != HOST:
        raise ValueError(f"host {host!r} refused: the example shops bind {HOST} only")
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
        sock.listen(2048)
    except OSError:
        sock.close()
        raise
    return sock


def serve(make_app: Callable[[Callable[[], None]], Any], host: str, port: int) -> None:
    """Serve ``make_app(on_started)`` on ``host:port`` until SIGINT/SIGTERM. Once the app
    has started, the first line on stdout is ``serving http://127.0.0.1:PORT`` (the
    port actually bound: port 0 picks one), which is how a caller knows it is ready."""
    import uvicorn

    sock = bind(host, port)
    url = f"http://{host}:{sock.getsockname()[1]}"

    def on_started() -> None:
        print(f"serving {url}", flush=True)

    config = uvicorn.Config(
        make_app(on_started), access_log=False, log_level="warning", timeout_keep_alive=30
    )
    uvicorn.Server(config).run(sockets=[sock])


def closing_lifespan(
    con: sqlite3.Connection, on_started: Callable[[], None] | None
) -> Callable[[Any], contextlib.AbstractAsyncContextManager[None]]:
    """A Starlette lifespan that calls ``on_started`` once the app serves and closes the
    shop's books connection ``con`` when it stops."""

    @contextlib.asynccontextmanager
    async def lifespan(_: Any) -> AsyncIterator[None]:
        if on_started is not None:
            on_started()
        try:
            yield
        finally:
            con.close()

    return lifespan


def shop_arguments(parser: argparse.ArgumentParser, default_port: int) -> None:
    """The options both shops take: ``--host --port --db --units --opens-in-s``."""
    parser.add_argument("--host", default=HOST, help=f"only {HOST} is accepted")
    parser.add_argument(
        "--port", type=int, default=default_port, help="0 picks a free port (printed)"
    )
    parser.add_argument("--db", type=Path, help="the SQLite books (created if absent)")
    parser.add_argument("--units", type=int, default=200, help="units on sale (default 200)")
    parser.add_argument(
        "--opens-in-s", type=float, default=5.0, help="seconds until the sale opens (default 5)"
    )


def run_shop(
    parser: argparse.ArgumentParser,
    args: argparse.Namespace,
    shop: ShopKind,
    sku: str,
    make_app: Callable[[Path, Callable[[], None]], Any],
) -> int:
    """Check the common options, start a new sale in ``args.db`` and serve it."""
    if args.host != HOST:
        parser.error(f"--host {args.host}: refused, the example shops bind {HOST} only")
    if args.db is None:
        parser.error("--db FILE is required")
    if args.units < 0 or not 0 <= args.port <= 65535:
        parser.error("--units must be >= 0, --port 0..65535")
    try:
        con = connect(args.db)
        try:
            start_sale(con, shop, sku, args.units, args.opens_in_s)
        finally:
            con.close()
    except (BooksError, sqlite3.Error) as e:
        parser.error(f"--db {args.db}: {e}")
    try:
        serve(lambda on_started: make_app(args.db, on_started), args.host, args.port)
    except OSError as e:
        print(f"error: cannot listen on {args.host}:{args.port}: {e}", file=sys.stderr)
        return 1
    return 0


# --- command line ----------------------------------------------------------------------


def main(argv: Sequence[str] | None = None) -> int:
    """``audit --db FILE`` | ``reset --db FILE --units U [--opens-in-s X]``; prints JSON."""
    parser = argparse.ArgumentParser(
        prog="python -m examples.shops.books", description="Audit or reset a shop's books."
    )
    sub = parser.add_subparsers(dest="command", required=True)
    p_audit = sub.add_parser("audit", help="print the shop's own count of the sale as JSON")
    p_audit.add_argument("--db", type=Path, required=True)
    p_reset = sub.add_parser("reset", help="start a new sale in the books (shop may run)")
    p_reset.add_argument("--db", type=Path, required=True)
    p_reset.add_argument("--units", type=int, required=True)
    p_reset.add_argument("--opens-in-s", type=float, default=0.0)
    args = parser.parse_args(argv)
    try:
        con = connect(args.db, create=False)
        try:
            if args.command == "audit":
                print(json.dumps(audit(con)))
            else:
                sale = reset(con, args.units, args.opens_in_s)
                print(
                    json.dumps(
                        {
                            "shop": sale.shop,
                            "sku": sale.sku,
                            "units": sale.units,
                            "opens_in_s": round(sale.opens_in_s(), 3),
                        }
                    )
                )
        finally:
            con.close()
    except (BooksError, sqlite3.Error) as e:
        print(f"error: {args.db}: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
