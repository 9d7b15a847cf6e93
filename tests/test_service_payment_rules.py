"""The reference service's payment rule, the simulator's (flashsale.sim.stock):

- the hold is checked when a worker starts the payment: 410 ``hold_expired`` if its
  time is up (a hold lives while now < expires_at);
- from then on it is the payment's: the sweeper and other carts cannot take its
  units while the gateway decides, so a paid answer sells them even if the cart's
  hold time ran out meanwhile;
- declined (402) or timed out (504) gives the units back at once; the hold is gone
  (a later pay: 410), the buyer carts again.

Most tests step the service's injected clock and hold the gateway on an event, so
nothing depends on how fast this machine is; one replays the measured bug with
real times (cart_hold_s = 1, gateway_s = 2). Every test runs on SQLite and
PostgreSQL (the ``db`` fixture).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable
from typing import Any

import httpx
import numpy as np

from flashsale.distributions import Constant
from flashsale.scenario import Payment, Scenario, parse_scenario
from flashsale.service.payment import PaymentGateway
from flashsale.service.runtime import Runtime
from flashsale.service.store import Charge

from ._asgi_service import cart, pay, serving
from ._inprocess import ADMIN

T0 = 1_000_000.0


def scenario(units: int = 1, **service: Any) -> Scenario:
    return parse_scenario(
        {
            "schema_version": 1,
            "name": "pay_rules",
            "sale": {"sku": "SKU-P", "units": units},
            "humans": {"count": 10},
            "service": {"workers": 4, "queue_limit": 50, "cart_hold_s": 1.0, **service},
        }
    )


class Clock:
    """The service's clock, stepped by the test."""

    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> float:
        return self.now


class Gateway:
    """Stands in for the payment gateway: each charge waits until the test answers it."""

    def __init__(self) -> None:
        self.started = asyncio.Event()
        self._verdict: asyncio.Future[Charge] = asyncio.get_running_loop().create_future()

    def start(self, load: float) -> Awaitable[Charge]:
        self.started.set()
        return self._wait()

    async def _wait(self) -> Charge:
        return await self._verdict

    def answer(self, verdict: Charge) -> None:
        self._verdict.set_result(verdict)


async def audit(c: httpx.AsyncClient) -> dict[str, Any]:
    """The service's books (expiring what is due first); they must balance."""
    a: dict[str, Any] = (await c.get("/admin/audit", headers=ADMIN)).json()
    assert a["units_sold"] + a["units_reserved"] + a["stock_left"] == a["units"], a
    assert a["oversold_units"] == 0
    return a


async def paying(
    rt: Runtime, c: httpx.AsyncClient, gateway: Gateway, rid: int, account: int, key: str
) -> asyncio.Task[httpx.Response]:
    """Send a pay and return once the gateway has it (the hold is being paid)."""
    rt.gateway.start = gateway.start  # type: ignore[method-assign,assignment]
    task = asyncio.create_task(pay(c, rid, account, key))
    await gateway.started.wait()
    return task


def test_hold_that_expires_during_the_gateway_wait_is_sold_to_its_payer(db: str) -> None:
    async def run() -> None:
        clock = Clock()
        async with serving(db, scenario(payment={"gateway_s": 2.0}), clock) as (rt, c):
            rid = (await cart(c, 1)).json()["reservation_id"]
            gateway = Gateway()
            task = await paying(rt, c, gateway, rid, 1, "a-1")
            clock.now = T0 + 5.0  # the cart's hold (1 s) is long over
            assert await rt.store.expire(clock()) == []  # what the sweeper would do
            a = await audit(c)
            assert (a["units_reserved"], a["stock_left"]) == (1, 0)
            assert a["reservations"][0]["status"] == "paying"
            assert (await cart(c, 2)).json()["error"] == "sold_out"
            other = await pay(c, rid, 1, "a-2")  # a second payment of the same hold
            assert other.status_code == 409 and other.json()["error"] == "request_in_progress"
            assert other.headers["retry-after"] == "1"
            gateway.answer("paid")
            paid = await task
            assert paid.status_code == 201, paid.text
            order = (await c.get(f"/v1/orders/{paid.json()['order_id']}?account=1")).json()
            assert (order["account"], order["units"], order["status"]) == (1, 1, "paid")
            # the in-progress answer was not kept under its key: it now gets the outcome
            assert (await pay(c, rid, 1, "a-2")).json()["error"] == "already_paid"
            assert (await pay(c, rid, 1, "a-1")).json() == paid.json()  # the kept answer
            assert (await cart(c, 2)).json()["error"] == "sold_out"
            a = await audit(c)
            assert (a["units_sold"], a["units_reserved"], a["stock_left"]) == (1, 0, 0)
            assert [o["account"] for o in a["order_rows"]] == [1]

    asyncio.run(run())


def test_a_lone_payment_meets_no_load(db: str) -> None:
    """The load a payment meets is its pool's requests per worker when it arrives, not
    counting itself, as in the simulator: on one idle worker, with failures growing from
    a load of 0 (p = 0 + 1 x load), a lone payment is never declined. Counting itself
    (load 1, p = 1), the service declined every one."""

    async def run() -> None:
        payment = {"failure_growth": 1.0, "load_knee": 0.0}
        async with serving(db, scenario(units=3, workers=1, payment=payment)) as (_, c):
            for account in (1, 2, 3):
                rid = (await cart(c, account)).json()["reservation_id"]
                paid = await pay(c, rid, account, f"lone-{account}")
                assert paid.status_code == 201, paid.text
            assert (await audit(c))["units_sold"] == 3

    asyncio.run(run())


def test_declined_or_timed_out_payment_releases_the_hold(db: str) -> None:
    async def run() -> None:
        clock = Clock()
        async with serving(db, scenario(payment={"gateway_s": 2.0}), clock) as (rt, c):
            cases: list[tuple[Charge, int, str]] = [
                ("failed", 402, "payment_failed"),
                ("timeout", 504, "payment_timeout"),
            ]
            for n, (verdict, status, error) in enumerate(cases):
                account = 10 + n
                rid = (await cart(c, account)).json()["reservation_id"]
                gateway = Gateway()
                task = await paying(rt, c, gateway, rid, account, f"{verdict}-1")
                clock.now += 5.0  # past the cart's hold: the failure still releases it
                gateway.answer(verdict)
                r = await task
                assert r.status_code == status and r.json()["error"] == error, r.text
                a = await audit(c)
                assert (a["units_sold"], a["units_reserved"], a["stock_left"]) == (0, 0, 1)
                assert a["reservations"][-1]["status"] == "failed"
                again = await pay(c, rid, account, f"{verdict}-2")
                assert again.status_code == 410 and again.json()["error"] == "hold_expired"
                kept = await pay(c, rid, account, f"{verdict}-1")
                assert (kept.status_code, kept.json()) == (status, r.json())
            assert (await cart(c, 20)).status_code == 201  # the unit is back on sale
            assert (await audit(c))["units_reserved"] == 1

    asyncio.run(run())


def test_pay_after_the_hold_expired_is_410(db: str) -> None:
    async def run() -> None:
        clock = Clock()
        async with serving(db, scenario(units=2), clock) as (_, c):
            late = (await cart(c, 1)).json()["reservation_id"]
            clock.now = T0 + 0.5
            on_time = (await cart(c, 2)).json()["reservation_id"]
            clock.now = T0 + 1.0  # the first hold's last instant has passed
            r = await pay(c, late, 1, "late")
            assert r.status_code == 410 and r.json()["error"] == "hold_expired"
            assert (await pay(c, on_time, 2, "on-time")).status_code == 201
            a = await audit(c)
            assert (a["units_sold"], a["units_reserved"], a["stock_left"]) == (1, 0, 1)
            assert [r["status"] for r in a["reservations"]] == ["expired", "paid"]
            assert (await pay(c, late, 1, "late")).status_code == 410  # the kept answer

    asyncio.run(run())


def test_payment_past_its_deadline_is_given_up_and_a_late_paid_is_voided(db: str) -> None:
    """The service stopped or stalled mid-payment: the hold cannot stay out of the stock
    for ever, and a "paid" arriving after the service gave up must not sell it."""

    async def run() -> None:
        clock = Clock()
        async with serving(db, scenario(payment={"gateway_s": 2.0}), clock) as (rt, c):
            rid = (await cart(c, 1)).json()["reservation_id"]
            gateway = Gateway()
            task = await paying(rt, c, gateway, rid, 1, "stuck")
            clock.now = T0 + rt.gateway.give_up_s - 0.001
            assert await rt.store.expire(clock()) == []
            clock.now = T0 + rt.gateway.give_up_s
            assert await rt.store.expire(clock()) == [(1, 1)]
            assert (await pay(c, rid, 1, "other")).json()["error"] == "hold_expired"
            gateway.answer("paid")
            r = await task
            assert r.status_code == 504 and r.json()["error"] == "payment_timeout", r.text
            a = await audit(c)
            assert (a["units_sold"], a["units_reserved"], a["stock_left"]) == (0, 0, 1)
            assert a["order_rows"] == [] and a["reservations"][0]["status"] == "failed"
            assert (await cart(c, 2)).status_code == 201

    asyncio.run(run())


def test_measured_bug_hold_1s_gateway_2s_real_time(db: str) -> None:
    """The measured bug, with real times and the real gateway: the buyer's hold (1 s)
    runs out during the gateway's 2 s; the service used to answer 410 after the gateway
    said paid and sell the unit to the next buyer. Another buyer keeps trying to cart
    the unit until the payment's answer comes: every try must find it sold out."""

    async def run() -> None:
        async with serving(db, scenario(payment={"gateway_s": 2.0})) as (_, c):
            r = await cart(c, 1)
            carted = time.time()
            payment = asyncio.create_task(pay(c, r.json()["reservation_id"], 1, "k"))
            tries: list[httpx.Response] = []
            while not payment.done():
                tries.append(await cart(c, 2))
                if time.time() > carted + 1.0 and not payment.done():
                    await audit(c)  # runs the expiry itself, as the sweeper does
                await asyncio.sleep(0.05)
            paid = await payment
            assert paid.status_code == 201, paid.text
            assert tries and {t.json()["error"] for t in tries} == {"sold_out"}
            a = await audit(c)
            assert (a["units_sold"], a["units_reserved"], a["stock_left"]) == (1, 0, 0)
            assert [o["account"] for o in a["order_rows"]] == [1]

    asyncio.run(run())


def test_gateway_times_out_only_when_slower_than_timeout_s() -> None:
    """As in the simulation: a gateway exactly as slow as ``timeout_s`` still answers."""

    async def run(gateway_s: float) -> Charge:
        pay_cfg = Payment(gateway_s=Constant(value=gateway_s), timeout_s=0.05)
        gw = PaymentGateway(pay_cfg, np.random.default_rng(0))
        pending = gw.start(0.0)
        assert not isinstance(pending, str)
        return await pending

    assert asyncio.run(run(0.05)) == "paid"
    assert asyncio.run(run(0.06)) == "timeout"


def test_verdict_uses_the_load_the_payment_met() -> None:
    """The load the payment met decides, not the load after the gateway's wait (the
    simulation decides before the wait too)."""
    pay_cfg = Payment(
        gateway_s=Constant(value=0.01), failure_growth=1.0, load_knee=1.0, timeout_s=1.0
    )
    gw = PaymentGateway(pay_cfg, np.random.default_rng(0))

    async def run(load: float) -> Charge:
        pending = gw.start(load)
        assert not isinstance(pending, str)
        return await pending

    assert asyncio.run(run(0.0)) == "paid"
    assert asyncio.run(run(100.0)) == "failed"
