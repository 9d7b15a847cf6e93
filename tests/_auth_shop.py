"""A tiny stand-in checkout behind a bearer token, for tests/test_target_replay.py.

Every path answers ``401 {"error": "unauthorized"}`` unless the request carries
``Authorization: Bearer <token>`` (``--token``, default ``s3cret``; ``--token ''``
turns the check off). Behind it, one product in memory, never oversold (the event
loop is the only writer)::

    GET  /api/sale               200 {"state": "open"|"soon"|"over", "left": n, "opens_in_s": s}
    POST /api/holds              {"buyer": account, "qty": n}
                                 -> 201 {"hold": id} | 409 {"error": "sold_out"}
                                    | 425 {"error": "not_open"}
    POST /api/holds/<id>/pay     -> 200 {"paid": true, "qty": n} (again: the same) | 404
    POST /api/reset              {"units": u, "opens_in_s": s} -> 200 {"units": u}
                                 (the sale starts with 200 units, open at once)
    GET  /api/audit              -> 200 {"units": u, "units_sold": n, "oversold_units": 0,
                                         "orders": k}

``--html-status`` makes the sale page (``/api/sale``, and ``/v1/sale``, the reference
service's) a ``text/html`` 200 page: a shop whose status page is not JSON.
``--log FILE`` appends one line per request received (``METHOD PATH STATUS``), so a
test can tell whether anything was sent at all.

    python -m tests._auth_shop --port 0 [--token T] [--html-status] [--log FILE]

prints ``serving http://127.0.0.1:PORT`` once it serves (examples.shops.books.serve).
"""

from __future__ import annotations

import argparse
import hmac
import json
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response
from starlette.routing import Route

from examples.shops.books import HOST, serve

HTML_PAGE = "<!doctype html><html><body><h1>Flash sale</h1><p>Coming soon</p></body></html>"


class _Sale:
    def __init__(self, units: int, opens_in_s: float) -> None:
        self.units = self.left = units
        self.opens_at = time.time() + opens_in_s
        self.holds: dict[int, int] = {}  # hold id -> units
        self.paid: set[int] = set()


def create_app(
    token: str, html_status: bool, log: Path | None, on_started: Callable[[], None]
) -> Starlette:
    sale = _Sale(200, 0.0)
    expected = f"Bearer {token}".encode()

    def guarded(handler: Callable[[Request], Awaitable[Response]]) -> Any:
        async def wrapped(request: Request) -> Response:
            given = request.headers.get("authorization", "").encode()
            if token and not hmac.compare_digest(given, expected):
                r: Response = JSONResponse({"error": "unauthorized"}, status_code=401)
            else:
                r = await handler(request)
            if log is not None:
                with log.open("a", encoding="utf-8") as f:
                    f.write(f"{request.method} {request.url.path} {r.status_code}\n")
            return r

        return wrapped

    async def body(request: Request) -> dict[str, Any]:
        try:
            data = json.loads(await request.body() or b"{}")
        except ValueError:
            data = None
        return data if isinstance(data, dict) else {}

    async def status(_: Request) -> Response:
        if html_status:
            return HTMLResponse(HTML_PAGE)
        opens_in = sale.opens_at - time.time()
        state = "soon" if opens_in > 0 else "open" if sale.left > 0 else "over"
        return JSONResponse(
            {"state": state, "left": sale.left, "opens_in_s": round(max(0.0, opens_in), 3)}
        )

    async def hold(request: Request) -> Response:
        qty = (await body(request)).get("qty", 1)
        if type(qty) is not int or qty < 1:
            return JSONResponse({"error": "bad_qty"}, status_code=422)
        if time.time() < sale.opens_at:
            return JSONResponse({"error": "not_open"}, status_code=425)
        if sale.left < qty:
            return JSONResponse({"error": "sold_out"}, status_code=409)
        sale.left -= qty
        hold_id = len(sale.holds) + 1
        sale.holds[hold_id] = qty
        return JSONResponse({"hold": hold_id}, status_code=201)

    async def pay(request: Request) -> Response:
        hold_id = int(request.path_params["hold_id"])
        if hold_id not in sale.holds:
            return JSONResponse({"error": "no_hold"}, status_code=404)
        sale.paid.add(hold_id)
        return JSONResponse({"paid": True, "qty": sale.holds[hold_id]})

    async def reset(request: Request) -> Response:
        nonlocal sale
        data = await body(request)
        units = data.get("units")
        try:  # a hook's {opens_in_s} is a string ("5.000")
            opens_in = float(data.get("opens_in_s", 0))
        except (TypeError, ValueError):
            opens_in = -1.0
        if type(units) is not int or units < 0 or opens_in < 0:
            return JSONResponse({"error": "bad_reset"}, status_code=422)
        sale = _Sale(units, opens_in)
        return JSONResponse({"units": units})

    async def audit(_: Request) -> Response:
        sold = sum(sale.holds[h] for h in sale.paid)
        return JSONResponse(
            {
                "units": sale.units,
                "units_sold": sold,
                "oversold_units": max(0, sold - sale.units),
                "orders": len(sale.paid),
            }
        )

    @asynccontextmanager
    async def lifespan(_: Starlette) -> AsyncIterator[None]:
        on_started()
        yield

    return Starlette(
        routes=[
            Route("/api/sale", guarded(status), methods=["GET"]),
            Route("/v1/sale", guarded(status), methods=["GET"]),
            Route("/api/holds", guarded(hold), methods=["POST"]),
            Route("/api/holds/{hold_id:int}/pay", guarded(pay), methods=["POST"]),
            Route("/api/reset", guarded(reset), methods=["POST"]),
            Route("/api/audit", guarded(audit), methods=["GET"]),
        ],
        lifespan=lifespan,
    )


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests._auth_shop")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--token", default="s3cret", help="'' turns the check off")
    parser.add_argument("--html-status", action="store_true")
    parser.add_argument("--log", type=Path, default=None)
    args = parser.parse_args(argv)
    serve(
        lambda started: create_app(args.token, args.html_status, args.log, started), HOST, args.port
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
