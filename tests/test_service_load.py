"""The service under real concurrency, on loopback, bounded in count and time.

Hundreds of httpx clients with retries buy a 1,000-unit stock on SQLite and on
PostgreSQL while an auditor checks the books; then the server is SIGKILLed
mid-sale and restarted. Invariants: sold + reserved + left == stock at every
audit, nothing oversold, every order a client was told about is in the
database, every idempotency key gives one answer.
"""

from __future__ import annotations

import asyncio
import os
import signal
import time
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest

from flashsale.scenario import Scenario, parse_scenario
from flashsale.service.server import ServiceURL, run_in_background

pytestmark = pytest.mark.slow

CLIENTS = 220
UNITS = 1000
MAX_REQUESTS = 30_000
DEADLINE_S = 30.0  # a cap, not a target: an idle 2-core machine sells out in ~10 s


def sale(units: int = UNITS, failure_prob: float = 0.05) -> Scenario:
    return parse_scenario(
        {
            "schema_version": 1,
            "name": "load",
            "seed": 11,
            "sale": {"sku": "LOAD-1", "units": units, "window_s": 600},
            "humans": {"count": CLIENTS},
            "service": {
                "workers": 32,
                "queue_limit": 5000,
                "queue_timeout_s": 10,
                "cart_hold_s": 60,
                "payment": {"failure_prob": failure_prob},
            },
        }
    )


@dataclass
class Ledger:
    """What clients were told, to check against the server's audit."""

    orders: dict[int, int] = field(default_factory=dict)  # order_id -> units
    answers: dict[str, set[str]] = field(default_factory=lambda: defaultdict(set))
    requests: int = 0
    audits: int = 0
    stop: bool = False

    def budget(self) -> bool:
        self.requests += 1
        return self.requests <= MAX_REQUESTS and not self.stop


def _client(base: str) -> httpx.AsyncClient:
    # verify=False: plain HTTP on loopback; loading the CA bundle per client costs ~50 ms
    return httpx.AsyncClient(base_url=base, timeout=10, verify=False)


async def _send(c: httpx.AsyncClient, ledger: Ledger, method: str, url: str, **kw: Any) -> Any:
    """One request with retries on transport errors and 503/429 (bounded by the budget)."""
    while ledger.budget():
        try:
            r = await c.request(method, url, **kw)
        except httpx.TransportError:
            await asyncio.sleep(0.05)
            continue
        if r.status_code in (429, 503):
            await asyncio.sleep(min(1.0, float(r.headers.get("retry-after", "1")) / 10))
            continue
        return r
    return None


async def buyer(base: str, account: int, ledger: Ledger, deadline: float) -> None:
    async with _client(base) as c:
        attempt = 0
        while time.monotonic() < deadline and not ledger.stop:
            r = await _send(
                c,
                ledger,
                "POST",
                "/v1/cart",
                json={"account": account, "sku": "LOAD-1", "units": 1},
            )
            if r is None or r.status_code == 409:
                return
            assert r.status_code == 201, r.text
            rid = r.json()["reservation_id"]
            while True:
                attempt += 1
                key = f"{account}-{attempt}"
                body = {"reservation_id": rid, "account": account}
                # every other payment is sent twice with the same key: applied once
                for _ in range(1 + attempt % 2):
                    p = await _send(
                        c,
                        ledger,
                        "POST",
                        "/v1/checkout",
                        json=body,
                        headers={"Idempotency-Key": key},
                    )
                    if p is None:
                        return
                    ledger.answers[key].add(p.text)
                if p.status_code == 201:
                    ledger.orders[p.json()["order_id"]] = p.json()["units"]
                    break
                assert p.status_code in (402, 410), p.text
                break  # a failed payment released the hold: cart again


async def auditor(base: str, token: str, ledger: Ledger) -> None:
    async with _client(base) as c:
        while not ledger.stop:
            try:
                a = (
                    await c.get("/admin/audit", headers={"Authorization": f"Bearer {token}"})
                ).json()
            except httpx.TransportError:
                await asyncio.sleep(0.1)
                continue
            check_books(a)
            ledger.audits += 1
            await asyncio.sleep(1.0)


def check_books(a: dict[str, Any], units: int = UNITS) -> None:
    assert a["units"] == units
    assert a["units_sold"] + a["units_reserved"] + a["stock_left"] == units
    assert a["oversold_units"] == 0
    assert a["units_sold"] == sum(o["units"] for o in a["order_rows"] if o["status"] == "paid")
    paid_reservations = [o["reservation_id"] for o in a["order_rows"]]
    assert len(paid_reservations) == len(set(paid_reservations))


async def crowd(base: str, token: str, ledger: Ledger, accounts: range, seconds: float) -> None:
    deadline = time.monotonic() + seconds
    audit = asyncio.create_task(auditor(base, token, ledger))
    await asyncio.gather(*(buyer(base, a, ledger, deadline) for a in accounts))
    ledger.stop = True
    await audit


def final_audit(url: ServiceURL) -> dict[str, Any]:
    a: dict[str, Any] = httpx.get(f"{url}/admin/audit", headers=url.admin_headers).json()
    check_books(a)
    return a


def test_200_concurrent_clients_buy_1000_units(db: str) -> None:
    ledger = Ledger()
    with run_in_background(sale(), db=db) as url:
        asyncio.run(crowd(url, url.admin_token, ledger, range(CLIENTS), DEADLINE_S))
        a = final_audit(url)
    assert ledger.requests <= MAX_REQUESTS
    assert ledger.audits >= 1
    assert a["units_sold"] == UNITS, "the crowd should sell the stock out"
    assert {o["order_id"]: o["units"] for o in a["order_rows"]} == ledger.orders
    assert all(len(texts) == 1 for texts in ledger.answers.values())


def test_sigkill_mid_sale_loses_no_order(db: str) -> None:
    ledger = Ledger()
    with run_in_background(sale(failure_prob=0.0), db=db) as url:

        async def until_kill() -> None:
            task = asyncio.create_task(crowd(url, url.admin_token, ledger, range(150), 15))
            while len(ledger.orders) < 300 and not task.done():
                await asyncio.sleep(0.02)
            os.kill(url.process.pid, signal.SIGKILL)
            url.process.wait()
            ledger.stop = True  # clients of a dead server stop; new ones buy after the restart
            await task

        asyncio.run(until_kill())
    told = dict(ledger.orders)
    assert len(told) >= 300
    with run_in_background(sale(failure_prob=0.0), db=db, fresh=False) as url:
        a = final_audit(url)
        in_db = {o["order_id"]: o["units"] for o in a["order_rows"]}
        assert told.items() <= in_db.items(), "an order a client was told about is missing"
        after = Ledger()
        asyncio.run(crowd(url, url.admin_token, after, range(1000, 1000 + CLIENTS), DEADLINE_S))
        a = final_audit(url)
    # sold out; holds taken by the killed clients stay reserved until they expire
    assert a["stock_left"] == 0 and a["units_sold"] >= len(told)
    assert told.items() <= {o["order_id"]: o["units"] for o in a["order_rows"]}.items()
