"""The reference service in process for async tests: flashsale.service's own app and
store, reached through httpx's ASGI transport (no socket, no network: the base URL is
a name only); the clock is the test's when it passes one."""

from __future__ import annotations

import contextlib
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import httpx

from flashsale.scenario import Scenario
from flashsale.service.app import create_app
from flashsale.service.backends import open_store
from flashsale.service.runtime import Runtime

from ._inprocess import TOKEN

__all__ = ["cart", "pay", "serving"]


@contextlib.asynccontextmanager
async def serving(
    db: str | Path, sc: Scenario, clock: Callable[[], float] = time.time
) -> AsyncIterator[tuple[Runtime, httpx.AsyncClient]]:
    """The service selling ``sc`` on ``db`` (admin token ``TOKEN``), and a client."""
    rt = Runtime(open_store(db, pool_size=4), sc, TOKEN, clock=clock)
    await rt.start()
    try:
        transport = httpx.ASGITransport(app=create_app(rt))
        async with httpx.AsyncClient(transport=transport, base_url="http://svc") as c:
            yield rt, c
    finally:
        await rt.stop()


async def cart(c: httpx.AsyncClient, account: int) -> httpx.Response:
    """One unit of SKU-P into ``account``'s cart."""
    return await c.post("/v1/cart", json={"account": account, "sku": "SKU-P", "units": 1})


async def pay(c: httpx.AsyncClient, rid: int, account: int, key: str) -> httpx.Response:
    """Pay reservation ``rid`` under Idempotency-Key ``key``."""
    return await c.post(
        "/v1/checkout",
        json={"reservation_id": rid, "account": account},
        headers={"Idempotency-Key": key},
    )
