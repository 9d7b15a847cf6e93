"""The reference service's worker pools per step, and its Server-Timing header.

The app is flashsale.service's own on SQLite, reached in process; a pool is made
busy by holding one of its workers from the test (the limiter the route uses), so
nothing depends on how fast this machine is.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import httpx
import pytest

from flashsale.replay.recorder import server_timing
from flashsale.scenario import Scenario, parse_scenario

from ._asgi_service import cart, pay, serving

PAY_POOL = {"payments": {"steps": ["pay"], "workers": 1, "queue_limit": 0}}


def _scenario(**service: Any) -> Scenario:
    return parse_scenario(
        {
            "schema_version": 1,
            "name": "pools",
            "sale": {"sku": "SKU-P", "units": 5},
            "humans": {"count": 10},
            "service": {"workers": 1, "queue_limit": 0, **service},
        }
    )


async def _pay(c: httpx.AsyncClient, rid: int, account: int) -> httpx.Response:
    return await pay(c, rid, account, f"k-{rid}-{account}")


def _timing(r: httpx.Response) -> dict[str, float]:
    return server_timing(r.headers["server-timing"])


def test_a_saturated_payment_pool_does_not_refuse_views_or_carts(tmp_path: Path) -> None:
    """Its one worker busy and no queue: payments get 503, pages and carts are served."""

    async def run() -> None:
        async with serving(tmp_path / "s.db", _scenario(pools=PAY_POOL)) as (rt, c):
            rid = (await cart(c, 1)).json()["reservation_id"]
            async with rt.limiters["pay"].slot():
                view = await c.get("/v1/sale")
                carted = await cart(c, 2)
                paid = await _pay(c, rid, 1)
            assert view.status_code == 200 and carted.status_code == 201
            assert paid.status_code == 503 and paid.json()["reason"] == "queue_full"
            assert _timing(paid) == {"queue": 0.0}
            assert (await _pay(c, rid, 1)).status_code == 201  # the worker is back

    asyncio.run(run())


def test_in_one_shared_pool_the_same_busy_worker_refuses_the_view(tmp_path: Path) -> None:
    async def run() -> None:
        async with serving(tmp_path / "s.db", _scenario()) as (rt, c):
            assert rt.limiters["view"] is rt.limiters["pay"] is rt.limiters["cart"]
            async with rt.limiters["pay"].slot():
                view = await c.get("/v1/sale")
            assert view.status_code == 503

    asyncio.run(run())


def test_a_payment_queued_in_its_pool_waits_while_views_are_served(tmp_path: Path) -> None:
    pools = {"payments": {"steps": ["pay"], "workers": 1, "queue_limit": 5}}

    async def run() -> None:
        sc = _scenario(pools=pools, queue_timeout_s=600.0)
        async with serving(tmp_path / "s.db", sc) as (rt, c):
            rid = (await cart(c, 1)).json()["reservation_id"]
            pay_pool = rt.limiters["pay"]
            async with pay_pool.slot():
                task = asyncio.create_task(_pay(c, rid, 1))
                for _ in range(10_000):  # until the payment is queued (bounded)
                    if pay_pool.waiting:
                        break
                    await asyncio.sleep(0)
                assert pay_pool.waiting == 1
                view = await c.get("/v1/sale")
                assert view.status_code == 200 and not task.done()
                await asyncio.sleep(0.01)  # the payment waits at least this long
            paid = await task
            assert paid.status_code == 201
            assert _timing(paid)["queue"] >= 10.0 > _timing(view)["queue"]

    asyncio.run(run())


def test_a_payments_load_is_its_own_pools(tmp_path: Path) -> None:
    """failure p = min(1, 100 x max(0, load - 0.25)) on 2 workers, at the load the
    payment meets on arrival (itself not counted, as in the simulator): alone in its
    pool it meets 0 and is paid; with a worker of its pool busy it meets 0.5 and is
    declined. A busy view worker counts only when views share the pool."""
    payment = {"failure_growth": 100.0, "load_knee": 0.25}

    async def verdict(db: Path, **service: Any) -> int:
        sc = _scenario(workers=2, queue_limit=5, payment=payment, **service)
        async with serving(db, sc) as (rt, c):
            rid = (await cart(c, 1)).json()["reservation_id"]
            async with rt.limiters["view"].slot():
                return (await _pay(c, rid, 1)).status_code

    pools = {"payments": {"steps": ["pay"], "workers": 2}}
    assert asyncio.run(verdict(tmp_path / "a.db", pools=pools)) == 201
    assert asyncio.run(verdict(tmp_path / "b.db")) == 402


@pytest.mark.parametrize("gateway_s", [0.0, 0.05])
def test_every_answer_from_a_worker_says_where_its_time_went(
    tmp_path: Path, gateway_s: float
) -> None:
    """Server-Timing: queue and service on every answer; gateway on a payment that
    reached the gateway (at least its wait), on no other answer."""

    async def run() -> None:
        sc = _scenario(workers=4, queue_limit=5, payment={"gateway_s": gateway_s})
        async with serving(tmp_path / "s.db", sc) as (_, c):
            view = await c.get("/v1/sale")
            carted = await cart(c, 1)
            refused = await c.post("/v1/cart", json={"account": 1, "sku": "NOPE", "units": 1})
            paid = await _pay(c, carted.json()["reservation_id"], 1)
            again = await _pay(c, carted.json()["reservation_id"], 1)  # the stored answer
            assert (view.status_code, carted.status_code, refused.status_code) == (200, 201, 422)
            assert paid.status_code == again.status_code == 201
            for r in (view, carted, refused, again):
                assert set(_timing(r)) == {"queue", "service"}, r.headers["server-timing"]
            parts = _timing(paid)
            assert set(parts) == {"queue", "service", "gateway"}
            assert parts["gateway"] >= 1000 * gateway_s * 0.9
            assert all(v >= 0 for v in parts.values())
            assert "server-timing" not in (await c.get("/healthz")).headers  # no worker

    asyncio.run(run())
