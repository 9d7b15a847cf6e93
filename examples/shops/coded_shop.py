"""A stand-in shop whose every answer is HTTP 200 with the outcome in a body code.

Unlike flashsale's reference API it takes form-encoded bodies
(``application/x-www-form-urlencoded``), wants a login token per user, and answers
``{"code": "OK", ...}`` or a refusal code, always with status 200. It never oversells:
an order reserves stock with one conditional update inside one write transaction.

API (every answer is ``200`` and JSON; the token goes in header ``X-Auth-Token``)::

    POST /api/login         form user=buyer<N>&password=pw<N>
                            -> {"code": "OK", "token": "<hex>"} | BAD_LOGIN | BAD_REQUEST
    GET  /api/flash/<sku>   -> {"code": "OK", "state": "open"|"upcoming"|"ended",
                                "left": N, "opens_in_s": s} | NOT_FOUND   (no token needed)
    POST /api/order/create  form sku=<sku>&qty=<1..MAX_QTY>, token
                            -> {"code": "OK", "order_no": "<no>"} | BAD_TOKEN | NOT_STARTED
                               | LIMIT | SOLD_OUT | NOT_FOUND | BAD_REQUEST
    POST /api/order/pay     form order_no=<no>[&card=<number>], token
                            -> {"code": "OK", "paid": true} | BAD_TOKEN | NO_ORDER
                               | DECLINED | BAD_REQUEST

``LIMIT``: the user already has an order in this sale (paid or not), or asked for more
than :data:`MAX_QTY` units. ``SOLD_OUT``: fewer units left than asked. Paying an order
again answers OK and counts nothing twice. Card :data:`DECLINED_CARD` is declined (the
order stays reserved; pay again with another card, or none). ``state`` is ``ended``
once no unit is left. A refusal's body is ``{"code": CODE}`` (BAD_REQUEST adds
``"msg"``). Unknown paths answer ``{"code": "NOT_FOUND"}``, other methods
``{"code": "METHOD_NOT_ALLOWED"}``, a crash ``{"code": "ERROR"}``: all with 200.

Accounts: user ``buyer<N>`` has password ``pw<N>`` (N = 0, 1, 2, ...);
:func:`write_accounts_csv` lists them as ``account,user,password``.

Books (:mod:`examples.shops.books`): an order is ``reserved`` when created (stock is
taken then) and ``paid`` when paid; the audit counts paid orders as sold.

Command line (from the checkout's root)::

    python -m examples.shops.coded_shop --port 0 --db shop.db --units 200 --opens-in-s 5
    python -m examples.shops.coded_shop --write-accounts accounts.csv --accounts 1000
"""

from __future__ import annotations

import argparse
import csv
import re
import secrets
import sqlite3
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from urllib.parse import parse_qs

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from examples.shops.books import (
    closing_lifespan,
    connect,
    immediate,
    read_sale,
    run_shop,
    shop_arguments,
)

__all__ = [
    "DECLINED_CARD",
    "DEFAULT_PORT",
    "DEFAULT_SKU",
    "MAX_QTY",
    "create_app",
    "main",
    "password_for",
    "write_accounts_csv",
]

DEFAULT_PORT = 8801
DEFAULT_SKU = "SKU-1"
"""The product on sale by default: a scenario's default ``sale.sku``."""
MAX_QTY = 5
"""Most units one order may ask for; more answers LIMIT."""
DECLINED_CARD = "4000000000000002"
"""The card number that is declined (the payment processors' usual test number)."""
MAX_BODY_BYTES = 16_384
FORM = "application/x-www-form-urlencoded"
_USER = re.compile(r"buyer(0|[1-9][0-9]*)")


def password_for(account: int) -> str:
    """The password of account ``account`` (user ``buyer<account>``): ``pw<account>``."""
    return f"pw{account}"


def write_accounts_csv(path: str | Path, count: int, start: int = 0) -> Path:
    """Write ``count`` accounts (numbers ``start`` ...) to ``path`` as CSV with the header
    ``account,user,password``, e.g. ``0,buyer0,pw0``; returns the path. Account numbers
    start at 0 as a replay's do (humans 0..H-1, then the bots)."""
    path = Path(path)
    with path.open("w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["account", "user", "password"])
        for n in range(start, start + count):
            w.writerow([n, f"buyer{n}", password_for(n)])
    return path


def _code(code: str, **more: object) -> JSONResponse:
    return JSONResponse({"code": code, **more})


class _BadRequest(Exception):
    """A body that is not a form, or a field missing or malformed: BAD_REQUEST."""


async def _form(request: Request) -> dict[str, str]:
    """The form-encoded body as {field: first value}; anything else is _BadRequest."""
    ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if ctype != FORM:
        raise _BadRequest(f"form body required ({FORM})")
    body = await request.body()
    if len(body) > MAX_BODY_BYTES:
        raise _BadRequest("body too large")
    try:
        fields = parse_qs(body.decode("utf-8"), keep_blank_values=True)
    except (UnicodeDecodeError, ValueError):
        raise _BadRequest("body is not a form") from None
    return {k: v[0] for k, v in fields.items()}


def _field(form: dict[str, str], name: str) -> str:
    value = form.get(name, "")
    if not value:
        raise _BadRequest(f"field {name!r} required")
    return value


def create_app(db: str | Path, on_started: Callable[[], None] | None = None) -> Starlette:
    """The coded shop on the books in ``db`` (a sale must be in them: start_sale)."""
    con: sqlite3.Connection = connect(db)

    def user_of(request: Request) -> str | None:
        token = request.headers.get("x-auth-token", "")
        row = con.execute("SELECT user FROM tokens WHERE token = ?", (token,)).fetchone()
        return None if row is None else str(row[0])

    async def login(request: Request) -> Response:
        form = await _form(request)
        user, password = _field(form, "user"), _field(form, "password")
        m = _USER.fullmatch(user)
        if m is None or password != password_for(int(m.group(1))):
            return _code("BAD_LOGIN")
        token = secrets.token_hex(16)
        with immediate(con):
            con.execute("INSERT INTO tokens (token, user) VALUES (?, ?)", (token, user))
        return _code("OK", token=token)

    async def flash(request: Request) -> Response:
        sale = read_sale(con)
        if request.path_params["sku"] != sale.sku:
            return _code("NOT_FOUND")
        opens_in = sale.opens_in_s()
        state = "upcoming" if opens_in > 0 else ("open" if sale.stock > 0 else "ended")
        return _code("OK", state=state, left=max(0, sale.stock), opens_in_s=round(opens_in, 3))

    async def create(request: Request) -> Response:
        user = user_of(request)
        if user is None:
            return _code("BAD_TOKEN")
        form = await _form(request)
        sku, qty_text = _field(form, "sku"), form.get("qty", "1")
        if not (qty_text.isascii() and qty_text.isdigit()) or int(qty_text) < 1:
            raise _BadRequest("qty must be a whole number >= 1")
        qty = int(qty_text)
        with immediate(con):  # one transaction: check, take stock, write the order
            sale = read_sale(con)
            if sku != sale.sku:
                return _code("NOT_FOUND")
            if sale.opens_in_s() > 0:
                return _code("NOT_STARTED")
            if (
                qty > MAX_QTY
                or con.execute("SELECT 1 FROM orders WHERE owner = ?", (user,)).fetchone()
            ):
                return _code("LIMIT")
            taken = con.execute(
                "UPDATE sale SET stock = stock - ? WHERE id = 1 AND stock >= ?", (qty, qty)
            ).rowcount
            if taken != 1:
                return _code("SOLD_OUT")
            order_no = "FS" + secrets.token_hex(8).upper()
            con.execute(
                "INSERT INTO orders (order_no, owner, sku, qty, status, created_at) "
                "VALUES (?, ?, ?, ?, 'reserved', ?)",
                (order_no, user, sku, qty, time.time()),
            )
        return _code("OK", order_no=order_no)

    async def pay(request: Request) -> Response:
        user = user_of(request)
        if user is None:
            return _code("BAD_TOKEN")
        form = await _form(request)
        order_no = _field(form, "order_no")
        with immediate(con):
            row = con.execute(
                "SELECT status FROM orders WHERE order_no = ? AND owner = ?", (order_no, user)
            ).fetchone()
            if row is None:
                return _code("NO_ORDER")
            if row[0] == "paid":  # paid before: OK again, counted once
                return _code("OK", paid=True)
            if form.get("card", "").replace(" ", "") == DECLINED_CARD:
                return _code("DECLINED")
            con.execute(
                "UPDATE orders SET status = 'paid', paid_at = ? WHERE order_no = ?",
                (time.time(), order_no),
            )
        return _code("OK", paid=True)

    async def bad_request(_: Request, exc: Exception) -> Response:
        return _code("BAD_REQUEST", msg=str(exc))

    async def http_error(_: Request, exc: Exception) -> Response:
        assert isinstance(exc, HTTPException)
        return _code("METHOD_NOT_ALLOWED" if exc.status_code == 405 else "NOT_FOUND")

    async def crash(_: Request, exc: Exception) -> Response:
        return _code("ERROR")

    return Starlette(
        routes=[
            Route("/api/login", login, methods=["POST"]),
            Route("/api/flash/{sku}", flash, methods=["GET"]),
            Route("/api/order/create", create, methods=["POST"]),
            Route("/api/order/pay", pay, methods=["POST"]),
        ],
        exception_handlers={
            _BadRequest: bad_request,
            HTTPException: http_error,
            Exception: crash,
        },
        lifespan=closing_lifespan(con, on_started),
    )


def main(argv: Sequence[str] | None = None) -> int:
    """Serve the coded shop, or (``--write-accounts FILE``) write the accounts CSV."""
    parser = argparse.ArgumentParser(
        prog="python -m examples.shops.coded_shop",
        description="A stand-in shop: HTTP 200 always, outcome codes in the body, "
        "form bodies, login tokens. Starting it starts a new sale in --db.",
    )
    shop_arguments(parser, DEFAULT_PORT)
    parser.add_argument("--sku", default=DEFAULT_SKU, help=f"the product (default {DEFAULT_SKU})")
    parser.add_argument(
        "--write-accounts",
        type=Path,
        metavar="FILE",
        help="write the accounts CSV (account,user,password) and exit",
    )
    parser.add_argument("--accounts", type=int, default=1000, help="how many (default 1000)")
    args = parser.parse_args(argv)
    if args.write_accounts is not None:
        write_accounts_csv(args.write_accounts, args.accounts)
        print(f"wrote {args.accounts} accounts to {args.write_accounts}")
        return 0
    if not args.sku or len(args.sku) > 64 or "/" in args.sku:
        parser.error("--sku: 1-64 characters, no '/'")
    return run_shop(parser, args, "coded", args.sku, create_app)


if __name__ == "__main__":
    sys.exit(main())
