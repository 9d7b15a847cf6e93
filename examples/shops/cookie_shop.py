"""A stand-in web shop with guest checkout by session cookie, CSRF and ids in the path.

Shaped like a typical open-source web shop (Django-style cookies and CSRF, a basket
per session, an order number per checkout) and with that kind of shop's classic flash
sale bug: stock is checked when a product is added to the basket, and checkout takes
the basket's units off the stock without checking again, even below zero. Under a
burst (many adds while stock is left, then the checkouts) it oversells: the bug a
replay must find. The race is real: the stock check and the stock decrement are
separate transactions of separate requests, and checkout awaits (a stand-in for the
payment call) between reading the basket and taking the stock.

API (JSON bodies and answers; every POST needs header ``X-CSRFToken`` equal to the
``csrftoken`` cookie, else ``403 {"detail": "CSRF Failed"}``)::

    GET  /shop/products/<id>/      -> 200 {"id": id, "available": N, "price": "10.00",
                                          "status": "open"|"not_started"|"closed",
                                          "opens_in_s": s}
                                      sets cookies sessionid and csrftoken if absent
                                      | 404 {"detail": "Not found."}
    POST /shop/basket/add/<id>/    {"quantity": n}   (n 1..99, default 1)
                                   -> 200 {"basket_url": "/shop/baskets/<b>/",
                                           "lines": [{"product": id, "quantity": q}],
                                           "total": "10.00"}
                                      | 406 {"reason": "Unavailable"}   (stock < basket's q)
                                      | 406 {"reason": "Not yet available"}
                                      | 400 {"quantity": [...]} | 404
    GET  /shop/baskets/<b>/        -> 200 the basket (as above) | 404 (not this session's)
    POST /shop/checkout/           {"basket": "<basket_url>"}
                                   -> 200 {"number": "<order number>", "total": "10.00"}
                                      | 406 {"reason": "Basket is empty"|"Basket is not open"}
                                      | 400 {"basket": [...]}

Each add adds its quantity again to the session's open basket (a re-sent add adds
units). A session without a cookie gets one on its first answer (a POST too). After a
checkout the session's next add opens a new basket.

Books (:mod:`examples.shops.books`): a checkout writes a ``placed`` order; the audit
counts placed orders as sold, and ``stock_left`` goes below zero once it oversold.

Command line (from the checkout's root)::

    python -m examples.shops.cookie_shop --port 0 --db shop.db --units 200 --opens-in-s 5
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import secrets
import sqlite3
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

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

__all__ = ["DEFAULT_PORT", "DEFAULT_PRODUCT_ID", "PRICE_CENTS", "create_app", "main"]

DEFAULT_PORT = 8802
DEFAULT_PRODUCT_ID = 1
PRICE_CENTS = 1000
"""The unit price, in cents (answers show it as a decimal string, "10.00")."""
MAX_QUANTITY = 99
MAX_BODY_BYTES = 16_384
SESSION_COOKIE = "sessionid"
CSRF_COOKIE = "csrftoken"
CSRF_HEADER = "X-CSRFToken"
PAYMENT_DELAY_S = 0.001
"""Checkout's await between reading the basket and taking the stock (the payment)."""
_BASKET_URL = re.compile(r"/shop/baskets/([0-9]+)/")


def _money(cents: int) -> str:
    return f"{cents // 100}.{cents % 100:02d}"


class _Refused(Exception):
    """An answer other than 200: ``status`` and the JSON ``body``."""

    def __init__(self, status: int, body: dict[str, Any]) -> None:
        super().__init__(status, body)
        self.status, self.body = status, body


def _not_found() -> _Refused:
    return _Refused(404, {"detail": "Not found."})


def create_app(db: str | Path, on_started: Callable[[], None] | None = None) -> Starlette:
    """The cookie shop on the books in ``db`` (a sale must be in them: start_sale)."""
    con: sqlite3.Connection = connect(db)

    def session_of(request: Request) -> tuple[str, dict[str, str]]:
        """The session id, and the cookies the answer must set (those that are absent)."""
        new: dict[str, str] = {}
        session = request.cookies.get(SESSION_COOKIE, "")
        if not session:
            session = new[SESSION_COOKIE] = secrets.token_hex(16)
        if not request.cookies.get(CSRF_COOKIE):
            new[CSRF_COOKIE] = secrets.token_hex(16)
        return session, new

    def answer(body: dict[str, Any], cookies: dict[str, str], status: int = 200) -> Response:
        r = JSONResponse(body, status_code=status)
        for name, value in cookies.items():
            r.set_cookie(name, value, path="/", samesite="lax", httponly=name == SESSION_COOKIE)
        return r

    async def json_body(request: Request) -> dict[str, Any]:
        body = await request.body()
        if len(body) > MAX_BODY_BYTES:
            raise _Refused(413, {"detail": "Request body too large."})
        try:
            data = json.loads(body or b"{}")
        except (ValueError, UnicodeDecodeError):
            raise _Refused(400, {"detail": "JSON parse error"}) from None
        if not isinstance(data, dict):
            raise _Refused(400, {"detail": "Expected a JSON object."})
        return data

    def check_csrf(request: Request) -> None:
        cookie = request.cookies.get(CSRF_COOKIE, "")
        if not cookie or request.headers.get(CSRF_HEADER, "") != cookie:
            raise _Refused(403, {"detail": "CSRF Failed"})

    def basket_view(basket_id: int) -> dict[str, Any]:
        lines = con.execute(
            "SELECT sku, quantity FROM basket_lines WHERE basket_id = ? ORDER BY sku",
            (basket_id,),
        ).fetchall()
        units = sum(int(q) for _, q in lines)
        return {
            "basket_url": f"/shop/baskets/{basket_id}/",
            "lines": [{"product": int(sku), "quantity": int(q)} for sku, q in lines],
            "total": _money(units * PRICE_CENTS),
        }

    async def product(request: Request) -> Response:
        sale = read_sale(con)
        product_id = request.path_params["product_id"]
        if str(product_id) != sale.sku:
            raise _not_found()
        _, cookies = session_of(request)
        opens_in = sale.opens_in_s()
        status = "not_started" if opens_in > 0 else ("open" if sale.stock > 0 else "closed")
        body = {
            "id": product_id,
            "available": max(0, sale.stock),
            "price": _money(PRICE_CENTS),
            "status": status,
            "opens_in_s": round(opens_in, 3),
        }
        return answer(body, cookies)

    async def add(request: Request) -> Response:
        check_csrf(request)
        session, cookies = session_of(request)
        product_id = request.path_params["product_id"]
        data = await json_body(request)
        quantity = data.get("quantity", 1)
        if type(quantity) is not int or not 1 <= quantity <= MAX_QUANTITY:
            raise _Refused(400, {"quantity": [f"Enter a whole number from 1 to {MAX_QUANTITY}."]})
        sale = read_sale(con)
        if str(product_id) != sale.sku:
            raise _not_found()
        if sale.opens_in_s() > 0:
            return answer({"reason": "Not yet available"}, cookies, 406)
        with immediate(con):
            row = con.execute(
                "SELECT id FROM baskets WHERE session = ? AND status = 'open'", (session,)
            ).fetchone()
            if row is None:
                basket_id = int(
                    con.execute(
                        "INSERT INTO baskets (session, status) VALUES (?, 'open')", (session,)
                    ).lastrowid
                    or 0
                )
            else:
                basket_id = int(row[0])
            (in_basket,) = con.execute(
                "SELECT COALESCE(SUM(quantity), 0) FROM basket_lines "
                "WHERE basket_id = ? AND sku = ?",
                (basket_id, sale.sku),
            ).fetchone()
            # the availability check: against the stock as it is now, at add time only
            (stock,) = con.execute("SELECT stock FROM sale WHERE id = 1").fetchone()
            if int(stock) < int(in_basket) + quantity:
                return answer({"reason": "Unavailable"}, cookies, 406)
            con.execute(
                "INSERT INTO basket_lines (basket_id, sku, quantity) VALUES (?, ?, ?) "
                "ON CONFLICT (basket_id, sku) "
                "DO UPDATE SET quantity = quantity + excluded.quantity",
                (basket_id, sale.sku, quantity),
            )
        return answer(basket_view(basket_id), cookies)

    async def basket(request: Request) -> Response:
        session, cookies = session_of(request)
        basket_id = request.path_params["basket_id"]
        row = con.execute(
            "SELECT 1 FROM baskets WHERE id = ? AND session = ?", (basket_id, session)
        ).fetchone()
        if row is None:
            raise _not_found()
        return answer(basket_view(basket_id), cookies)

    async def checkout(request: Request) -> Response:
        check_csrf(request)
        session, cookies = session_of(request)
        data = await json_body(request)
        url = data.get("basket")
        m = _BASKET_URL.search(url) if isinstance(url, str) else None
        if m is None:
            raise _Refused(400, {"basket": ["This field is required (a basket URL)."]})
        basket_id = int(m.group(1))
        with immediate(con):  # transaction 1: freeze the basket and read it
            row = con.execute(
                "SELECT status FROM baskets WHERE id = ? AND session = ?", (basket_id, session)
            ).fetchone()
            if row is None:
                raise _Refused(400, {"basket": ["Invalid hyperlink - Object does not exist."]})
            if row[0] != "open":
                return answer({"reason": "Basket is not open"}, cookies, 406)
            lines = con.execute(
                "SELECT sku, quantity FROM basket_lines WHERE basket_id = ?", (basket_id,)
            ).fetchall()
            if not lines:
                return answer({"reason": "Basket is empty"}, cookies, 406)
            con.execute("UPDATE baskets SET status = 'frozen' WHERE id = ?", (basket_id,))
        units = sum(int(q) for _, q in lines)
        await asyncio.sleep(PAYMENT_DELAY_S)  # the payment; other requests run meanwhile
        number = str(100_000 + basket_id)
        with immediate(con):  # transaction 2: take the stock (no check: the bug) and order
            if (
                con.execute(
                    "UPDATE baskets SET status = 'submitted' WHERE id = ? AND status = 'frozen'",
                    (basket_id,),
                ).rowcount
                != 1
            ):  # the books were reset meanwhile
                raise _Refused(400, {"basket": ["Invalid hyperlink - Object does not exist."]})
            # the one product on sale: a basket holds one line
            con.execute("UPDATE sale SET stock = stock - ? WHERE id = 1", (units,))
            con.execute(
                "INSERT INTO orders (order_no, owner, sku, qty, status, created_at) "
                "VALUES (?, ?, ?, ?, 'placed', ?)",
                (number, session, str(lines[0][0]), units, time.time()),
            )
        return answer({"number": number, "total": _money(units * PRICE_CENTS)}, cookies)

    async def refused(_: Request, exc: Exception) -> Response:
        assert isinstance(exc, _Refused)
        return JSONResponse(exc.body, status_code=exc.status)

    async def http_error(_: Request, exc: Exception) -> Response:
        assert isinstance(exc, HTTPException)
        detail = "Not found." if exc.status_code == 404 else str(exc.detail)
        return JSONResponse({"detail": detail}, status_code=exc.status_code, headers=exc.headers)

    return Starlette(
        routes=[
            Route("/shop/products/{product_id:int}/", product, methods=["GET"]),
            Route("/shop/basket/add/{product_id:int}/", add, methods=["POST"]),
            Route("/shop/baskets/{basket_id:int}/", basket, methods=["GET"]),
            Route("/shop/checkout/", checkout, methods=["POST"]),
        ],
        exception_handlers={_Refused: refused, HTTPException: http_error},
        lifespan=closing_lifespan(con, on_started),
    )


def main(argv: Sequence[str] | None = None) -> int:
    """Serve the cookie shop."""
    parser = argparse.ArgumentParser(
        prog="python -m examples.shops.cookie_shop",
        description="A stand-in web shop: guest checkout by session cookie, CSRF, ids in "
        "the path; it oversells under a burst. Starting it starts a new sale in --db.",
    )
    shop_arguments(parser, DEFAULT_PORT)
    parser.add_argument(
        "--product-id", type=int, default=DEFAULT_PRODUCT_ID, help="the product (default 1)"
    )
    args = parser.parse_args(argv)
    if args.product_id < 0:
        parser.error("--product-id must be >= 0")
    return run_shop(parser, args, "cookie", str(args.product_id), create_app)


if __name__ == "__main__":
    sys.exit(main())
