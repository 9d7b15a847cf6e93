"""The example stand-in shops (examples/shops/): what a user notices against each shop,
checked against the shop's own books (``python -m examples.shops.books audit``).

Each test starts a shop as a real process on a free loopback port and waits for the
``serving http://127.0.0.1:PORT`` line it prints once started (never a fixed sleep).
"""

from __future__ import annotations

import asyncio
import contextlib
import csv
import json
import subprocess
import sys
from collections.abc import Awaitable, Callable, Iterable, Iterator
from pathlib import Path
from typing import TypeVar

import httpx
import pytest

from . import _shopserver as shop_server
from ._shopserver import ROOT, books

HTTP_TIMEOUT = httpx.Timeout(30.0)
CONCURRENCY = 16
"""Requests in flight at once in a burst (the buyers are many more)."""

T = TypeVar("T")


def _python_m(module: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", module, *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


@contextlib.contextmanager
def running(shop: str, db: Path, units: int, opens_in_s: float = 0.0, *extra: str) -> Iterator[str]:
    """Start ``examples.shops.<shop>`` on port 0; yield its base URL; stop it (SIGTERM)."""
    args = ["--db", str(db), "--units", str(units), "--opens-in-s", str(opens_in_s), *extra]
    with shop_server.running(f"examples.shops.{shop}", db.parent / f"{shop}.log", *args) as url:
        yield url


async def bounded(
    job: Callable[[int], Awaitable[T]], args: Iterable[int], limit: int = CONCURRENCY
) -> list[T]:
    """``job(i)`` for each ``i`` in ``args``, at most ``limit`` at once; results in order."""
    gate = asyncio.Semaphore(limit)

    async def one(i: int) -> T:
        async with gate:
            return await job(i)

    return await asyncio.gather(*(one(i) for i in args))


# --- (a) the coded shop: HTTP 200 always, codes in the body, forms, tokens ----------


def _login(client: httpx.Client, user: str, password: str) -> str:
    r = client.post("/api/login", data={"user": user, "password": password})
    assert r.status_code == 200 and r.json()["code"] == "OK", r.text
    token: str = r.json()["token"]
    return token


def test_coded_shop_login_create_pay_sells_exactly_one_unit(tmp_path: Path) -> None:
    accounts = tmp_path / "accounts.csv"
    done = _python_m(
        "examples.shops.coded_shop", "--write-accounts", str(accounts), "--accounts", "3"
    )
    assert done.returncode == 0, done.stderr
    with accounts.open(newline="") as f:
        rows = list(csv.DictReader(f))
    assert rows == [
        {"account": str(n), "user": f"buyer{n}", "password": f"pw{n}"} for n in (0, 1, 2)
    ]
    db = tmp_path / "coded.db"
    with running("coded_shop", db, units=10) as url, httpx.Client(base_url=url) as c:
        status = c.get("/api/flash/SKU-1").json()
        assert status == {"code": "OK", "state": "open", "left": 10, "opens_in_s": 0.0}
        h = {"X-Auth-Token": _login(c, rows[1]["user"], rows[1]["password"])}
        created = c.post("/api/order/create", data={"sku": "SKU-1", "qty": "1"}, headers=h)
        assert created.status_code == 200 and created.json()["code"] == "OK"
        order = {"order_no": created.json()["order_no"]}
        # created, not paid: reserved, not sold
        assert books("audit", db)["units_reserved"] == 1
        for _ in range(2):  # paying again answers OK and counts nothing twice
            paid = c.post("/api/order/pay", data=order, headers=h)
            assert paid.status_code == 200 and paid.json() == {"code": "OK", "paid": True}
        again = c.post("/api/order/create", data={"sku": "SKU-1"}, headers=h)
        assert again.json() == {"code": "LIMIT"}  # one order per user
        assert c.get("/api/flash/SKU-1").json()["left"] == 9
        audit = books("audit", db)
    assert audit == {
        "shop": "coded",
        "units": 10,
        "units_sold": 1,
        "units_reserved": 0,
        "stock_left": 9,
        "orders": 1,
        "oversold_units": 0,
    }


def test_coded_shop_burst_of_250_buyers_for_50_units_sells_exactly_50(tmp_path: Path) -> None:
    db = tmp_path / "coded.db"

    async def burst(url: str) -> list[str]:
        async with httpx.AsyncClient(
            base_url=url,
            timeout=HTTP_TIMEOUT,
            limits=httpx.Limits(max_connections=CONCURRENCY),
        ) as c:

            async def buyer(n: int) -> str:
                r = await c.post("/api/login", data={"user": f"buyer{n}", "password": f"pw{n}"})
                h = {"X-Auth-Token": r.json()["token"]}
                r = await c.post("/api/order/create", data={"sku": "SKU-1"}, headers=h)
                assert r.status_code == 200
                if r.json()["code"] != "OK":
                    return str(r.json()["code"])
                r = await c.post(
                    "/api/order/pay", data={"order_no": r.json()["order_no"]}, headers=h
                )
                assert r.status_code == 200
                return "PAID" if r.json() == {"code": "OK", "paid": True} else r.text

            return await bounded(buyer, range(1, 251))

    with running("coded_shop", db, units=50) as url:
        outcomes = asyncio.run(burst(url))
        assert outcomes.count("PAID") == 50
        assert outcomes.count("SOLD_OUT") == 200
        with httpx.Client(base_url=url) as c:
            assert c.get("/api/flash/SKU-1").json()["state"] == "ended"
        audit = books("audit", db)
    assert audit["units_sold"] == 50 and audit["orders"] == 50
    assert audit["oversold_units"] == 0 and audit["stock_left"] == 0


def test_coded_shop_wants_form_bodies_and_a_valid_token(tmp_path: Path) -> None:
    with (
        running("coded_shop", tmp_path / "coded.db", units=5) as url,
        httpx.Client(base_url=url) as c,
    ):
        as_json = c.post("/api/login", json={"user": "buyer1", "password": "pw1"})
        assert as_json.status_code == 200 and as_json.json()["code"] == "BAD_REQUEST"
        assert c.post("/api/login", data={"user": "buyer1", "password": "pw2"}).json() == {
            "code": "BAD_LOGIN"
        }
        token = _login(c, "buyer1", "pw1")
        sku = {"sku": "SKU-1"}
        for headers in ({}, {"X-Auth-Token": "0" * 32}, {"X-Auth-Token": ""}):
            r = c.post("/api/order/create", data=sku, headers=headers)
            assert r.status_code == 200 and r.json() == {"code": "BAD_TOKEN"}
        h = {"X-Auth-Token": token}
        r = c.post("/api/order/create", json=sku, headers=h)  # JSON, not a form
        assert r.status_code == 200 and r.json()["code"] == "BAD_REQUEST"
        order_no = c.post("/api/order/create", data=sku, headers=h).json()["order_no"]
        other = {"X-Auth-Token": _login(c, "buyer2", "pw2")}
        assert c.post("/api/order/pay", data={"order_no": order_no}, headers=other).json() == {
            "code": "NO_ORDER"
        }
        declined = {"order_no": order_no, "card": "4000 0000 0000 0002"}
        assert c.post("/api/order/pay", data=declined, headers=h).json() == {"code": "DECLINED"}
        assert c.get("/api/nowhere").status_code == 200
        assert c.get("/api/nowhere").json() == {"code": "NOT_FOUND"}
        audit = books("audit", tmp_path / "coded.db")
    assert (audit["units_sold"], audit["units_reserved"], audit["stock_left"]) == (0, 1, 4)


# --- (b) the cookie shop: session cookie, CSRF, ids in the path; oversells ----------


def _guest_add(c: httpx.Client, product: int = 1, quantity: int = 1) -> httpx.Response:
    page = c.get(f"/shop/products/{product}/")
    assert page.status_code == 200
    return c.post(
        f"/shop/basket/add/{product}/",
        json={"quantity": quantity},
        headers={"X-CSRFToken": c.cookies["csrftoken"]},
    )


def test_cookie_shop_needs_csrf_and_answers_a_basket(tmp_path: Path) -> None:
    db = tmp_path / "cookie.db"
    with running("cookie_shop", db, units=10) as url, httpx.Client(base_url=url) as c:
        page = c.get("/shop/products/1/")
        assert page.status_code == 200
        assert page.json() == {
            "id": 1,
            "available": 10,
            "price": "10.00",
            "status": "open",
            "opens_in_s": 0.0,
        }
        assert {"sessionid", "csrftoken"} <= set(c.cookies)
        assert c.get("/shop/products/2/").status_code == 404
        add = "/shop/basket/add/1/"
        for headers in ({}, {"X-CSRFToken": "wrong"}):
            r = c.post(add, json={"quantity": 1}, headers=headers)
            assert r.status_code == 403 and r.json() == {"detail": "CSRF Failed"}
        csrf = {"X-CSRFToken": c.cookies["csrftoken"]}
        first = c.post(add, json={"quantity": 1}, headers=csrf)
        assert first.status_code == 200
        basket_url = first.json()["basket_url"]
        assert basket_url.startswith("/shop/baskets/") and basket_url.endswith("/")
        assert first.json()["lines"] == [{"product": 1, "quantity": 1}]
        resent = c.post(add, json={"quantity": 1}, headers=csrf)  # a re-sent add adds units
        assert resent.json()["basket_url"] == basket_url
        assert resent.json()["lines"] == [{"product": 1, "quantity": 2}]
        assert c.get(basket_url).json()["lines"] == [{"product": 1, "quantity": 2}]
        with httpx.Client(base_url=url) as stranger:  # another session: not its basket
            assert stranger.get(basket_url).status_code == 404
        assert c.post("/shop/checkout/", json={"basket": basket_url}).status_code == 403
        order = c.post("/shop/checkout/", json={"basket": basket_url}, headers=csrf)
        assert order.status_code == 200
        assert order.json()["total"] == "20.00" and order.json()["number"]
        again = c.post("/shop/checkout/", json={"basket": basket_url}, headers=csrf)
        assert again.status_code == 406
        audit = books("audit", db)
    assert (audit["units_sold"], audit["orders"], audit["stock_left"]) == (2, 1, 8)


def test_cookie_shop_sold_out_is_406_unavailable(tmp_path: Path) -> None:
    with running("cookie_shop", tmp_path / "cookie.db", units=1) as url:
        with httpx.Client(base_url=url) as a:
            basket = _guest_add(a).json()["basket_url"]
            csrf = {"X-CSRFToken": a.cookies["csrftoken"]}
            assert a.post("/shop/checkout/", json={"basket": basket}, headers=csrf).is_success
        with httpx.Client(base_url=url) as b:
            r = _guest_add(b)
            assert r.status_code == 406 and r.json() == {"reason": "Unavailable"}
            page = b.get("/shop/products/1/").json()
            assert (page["available"], page["status"]) == (0, "closed")


def test_cookie_shop_burst_of_200_guests_for_50_units_oversells(tmp_path: Path) -> None:
    """Every guest adds (stock is still 50 at each add), then every guest checks out:
    checkout does not check the stock again, so 200 units are sold. The two phases are
    separated by a barrier (gather), so the count is exact, not a matter of timing."""
    db = tmp_path / "cookie.db"
    guests = 200

    async def burst(url: str) -> tuple[list[int], list[int]]:
        # one cookie jar per guest (a client each), one bounded pool of connections
        transport = httpx.AsyncHTTPTransport(limits=httpx.Limits(max_connections=CONCURRENCY))
        clients = [
            httpx.AsyncClient(base_url=url, transport=transport, timeout=HTTP_TIMEOUT)
            for _ in range(guests)
        ]
        baskets: dict[int, str] = {}

        async def add(i: int) -> int:
            c = clients[i]
            assert (await c.get("/shop/products/1/")).status_code == 200
            r = await c.post(
                "/shop/basket/add/1/",
                json={"quantity": 1},
                headers={"X-CSRFToken": c.cookies["csrftoken"]},
            )
            if r.status_code == 200:
                baskets[i] = r.json()["basket_url"]
            return r.status_code

        async def checkout(i: int) -> int:
            c = clients[i]
            r = await c.post(
                "/shop/checkout/",
                json={"basket": baskets[i]},
                headers={"X-CSRFToken": c.cookies["csrftoken"]},
            )
            return r.status_code

        try:
            added = await bounded(add, range(guests))
            # barrier: every add has been answered before the first checkout
            paid = await bounded(checkout, sorted(baskets))
        finally:
            await transport.aclose()
        return added, paid

    with running("cookie_shop", db, units=50) as url:
        added, checked_out = asyncio.run(burst(url))
        audit = books("audit", db)
    assert added == [200] * guests
    assert checked_out == [200] * guests
    assert audit["units_sold"] > 50 and audit["oversold_units"] > 0  # the bug, found
    assert (audit["units_sold"], audit["oversold_units"], audit["stock_left"]) == (200, 150, -150)


# --- both: the audit and reset commands, loopback only --------------------------------


def test_reset_command_restarts_a_running_shops_sale_and_audit_counts_it(tmp_path: Path) -> None:
    coded, cookie = tmp_path / "coded.db", tmp_path / "cookie.db"
    with (
        running("coded_shop", coded, units=5, opens_in_s=3600) as url,
        httpx.Client(base_url=url) as c,
    ):
        assert c.get("/api/flash/SKU-1").json()["state"] == "upcoming"
        h = {"X-Auth-Token": _login(c, "buyer1", "pw1")}
        assert c.post("/api/order/create", data={"sku": "SKU-1"}, headers=h).json() == {
            "code": "NOT_STARTED"
        }
        sale = books("reset", coded, "--units", "3", "--opens-in-s", "0")
        assert sale == {"shop": "coded", "sku": "SKU-1", "units": 3, "opens_in_s": 0.0}
        assert c.get("/api/flash/SKU-1").json()["left"] == 3
        # a reset clears the tokens: log in again
        assert c.post("/api/order/create", data={"sku": "SKU-1"}, headers=h).json() == {
            "code": "BAD_TOKEN"
        }
        h = {"X-Auth-Token": _login(c, "buyer1", "pw1")}
        order = c.post("/api/order/create", data={"sku": "SKU-1", "qty": "2"}, headers=h).json()
        c.post("/api/order/pay", data={"order_no": order["order_no"]}, headers=h)
        assert books("audit", coded) == {
            "shop": "coded",
            "units": 3,
            "units_sold": 2,
            "units_reserved": 0,
            "stock_left": 1,
            "orders": 1,
            "oversold_units": 0,
        }
        books("reset", coded, "--units", "7")
        assert books("audit", coded)["units_sold"] == 0
        assert c.get("/api/flash/SKU-1").json()["left"] == 7

    with (
        running("cookie_shop", cookie, units=5, opens_in_s=3600) as url,
        httpx.Client(base_url=url) as c,
    ):
        assert c.get("/shop/products/1/").json()["status"] == "not_started"
        r = _guest_add(c)
        assert r.status_code == 406 and r.json() == {"reason": "Not yet available"}
        books("reset", cookie, "--units", "4", "--opens-in-s", "0")
        r = _guest_add(c, quantity=3)
        assert r.status_code == 200
        csrf = {"X-CSRFToken": c.cookies["csrftoken"]}
        c.post("/shop/checkout/", json={"basket": r.json()["basket_url"]}, headers=csrf)
        audit = books("audit", cookie)
    assert audit == {
        "shop": "cookie",
        "units": 4,
        "units_sold": 3,
        "units_reserved": 0,
        "stock_left": 1,
        "orders": 1,
        "oversold_units": 0,
    }
    # books.py needs only the standard library: it runs as a script from anywhere
    as_script = subprocess.run(
        [sys.executable, str(ROOT / "examples/shops/books.py"), "audit", "--db", "cookie.db"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert as_script.returncode == 0 and json.loads(as_script.stdout) == audit
    missing = _python_m("examples.shops.books", "audit", "--db", str(tmp_path / "none.db"))
    assert missing.returncode == 2 and "no such file" in missing.stderr
    assert not (tmp_path / "none.db").exists()


@pytest.mark.parametrize("shop", ["coded_shop", "cookie_shop"])
def test_shops_refuse_any_host_but_loopback(tmp_path: Path, shop: str) -> None:
    done = _python_m(
        f"examples.shops.{shop}", "--host", "0.0.0.0", "--port", "0", "--db", str(tmp_path / "x")
    )
    assert done.returncode == 2
    assert "refused" in done.stderr and "127.0.0.1 only" in done.stderr
    assert not (tmp_path / "x").exists()
