"""The reference checkout service, in process (Starlette TestClient), on SQLite and PostgreSQL.

PostgreSQL tests fail (not skip) when PostgreSQL is down: .ci/run starts it.
Each PostgreSQL test uses its own schema and drops it afterwards.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import psycopg
import pytest
from starlette.testclient import TestClient

from flashsale.scenario import Scenario, parse_scenario
from flashsale.service.app import create_app
from flashsale.service.backends import open_store
from flashsale.service.limiter import CapacityLimiter, Overloaded
from flashsale.service.openapi import OPERATIONS
from flashsale.service.runtime import Runtime

from .conftest import PG

TOKEN = "test-admin-token"
ADMIN = {"Authorization": f"Bearer {TOKEN}"}


def scenario(**sections: Any) -> Scenario:
    data: dict[str, Any] = {
        "schema_version": 1,
        "name": "svc",
        "seed": 3,
        "sale": {"sku": "SKU-T", "units": 10},
        "humans": {"count": 10},
        "service": {"workers": 4, "queue_limit": 50, "cart_hold_s": 60},
    }
    for key, value in sections.items():
        data[key] = {**data.get(key, {}), **value}
    return parse_scenario(data)


def client(db: str, sc: Scenario, opens_in_s: float = 0.0) -> TestClient:
    rt = Runtime(open_store(db, pool_size=4), sc, TOKEN, fresh=True, opens_in_s=opens_in_s)
    return TestClient(create_app(rt))


def cart(c: TestClient, account: int, units: int = 1, **extra: Any) -> Any:
    return c.post("/v1/cart", json={"account": account, "sku": "SKU-T", "units": units, **extra})


def pay(c: TestClient, rid: int, account: int, key: str) -> Any:
    return c.post(
        "/v1/checkout",
        json={"reservation_id": rid, "account": account},
        headers={"Idempotency-Key": key},
    )


def audit(c: TestClient) -> dict[str, Any]:
    a: dict[str, Any] = c.get("/admin/audit", headers=ADMIN).json()
    assert a["units_sold"] + a["units_reserved"] + a["stock_left"] == a["units"]
    assert a["oversold_units"] == 0
    return a


def test_buy_one_unit_end_to_end(db: str) -> None:
    with client(db, scenario()) as c:
        status = c.get("/v1/sale").json()
        assert status["open"] and status["stock_left"] == 10 and status["sku"] == "SKU-T"
        r = cart(c, 7, 2)
        assert r.status_code == 201, r.text
        assert audit(c)["units_reserved"] == 2
        p = pay(c, r.json()["reservation_id"], 7, "key-1")
        assert p.status_code == 201, p.text
        order = c.get(f"/v1/orders/{p.json()['order_id']}?account=7").json()
        assert order["status"] == "paid" and order["units"] == 2 and order["account"] == 7
        a = audit(c)
        assert (a["units_sold"], a["units_reserved"], a["stock_left"], a["orders"]) == (2, 0, 8, 1)


def test_idempotency_key_applies_once(db: str) -> None:
    with client(db, scenario()) as c:
        rid = cart(c, 1).json()["reservation_id"]
        first = pay(c, rid, 1, "same")
        again = pay(c, rid, 1, "same")
        assert (first.status_code, first.json()) == (again.status_code, again.json())
        other = pay(c, rid, 2, "same")
        assert other.status_code == 409 and other.json()["error"] == "idempotency_key_reused"
        twice = pay(c, rid, 1, "another-key")
        assert twice.status_code == 409 and twice.json()["error"] == "already_paid"
        a = audit(c)
        assert a["orders"] == 1 and a["units_sold"] == 1


def test_sells_out_exactly(db: str) -> None:
    with client(db, scenario(sale={"units": 3})) as c:
        codes = [cart(c, a).status_code for a in range(5)]
        assert codes == [201, 201, 201, 409, 409]
        assert cart(c, 9).json()["error"] == "sold_out"
        a = audit(c)
        assert a["units_reserved"] == 3 and a["stock_left"] == 0


BAD_CARTS: list[tuple[Any, int, str]] = [
    ({"account": 1, "sku": "SKU-T", "units": 0}, 422, "units"),
    ({"account": 1, "sku": "SKU-T", "units": -2}, 422, "units"),
    ({"account": 1, "sku": "SKU-T", "units": "1"}, 422, "units"),
    ({"account": 1, "sku": "SKU-T", "units": 1.5}, 422, "units"),
    ({"account": 1, "sku": "SKU-T", "units": True}, 422, "units"),
    ({"account": "x", "sku": "SKU-T", "units": 1}, 422, "account"),
    ({"account": -1, "sku": "SKU-T", "units": 1}, 422, "account"),
    ({"sku": "SKU-T", "units": 1}, 422, "account"),
    ({"account": 1, "sku": "OTHER", "units": 1}, 422, "sku"),
    ({"account": 1, "sku": "SKU-T", "units": 1, "channel": "tv"}, 422, "channel"),
    ([1, 2], 422, ""),
]


def test_bad_input_never_reaches_the_stock(db: str) -> None:
    with client(db, scenario()) as c:
        for body, status, field in BAD_CARTS:
            r = c.post("/v1/cart", json=body)
            assert r.status_code == status, (body, r.text)
            assert r.json()["error"] and (field == "" or r.json()["field"] == field), r.json()
        r = c.post("/v1/cart", content=b'{"account": 1, "sku"', headers={"content-type": "x"})
        assert r.status_code == 400 and r.json()["error"] == "malformed_json"
        r = c.post("/v1/cart", content=b"{" + b" " * 20_000 + b"}")
        assert r.status_code == 413 and r.json()["error"] == "body_too_large"
        r = c.post("/v1/checkout", json={"reservation_id": 1, "account": 1})
        assert r.status_code == 400 and r.json()["field"] == "Idempotency-Key"
        r = pay(c, 0, 1, "k")
        assert r.status_code == 422 and r.json()["field"] == "reservation_id"
        r = pay(c, 99, 1, "k2")
        assert r.status_code == 404 and r.json()["error"] == "unknown_reservation"
        assert c.get("/v1/orders/abc?account=1").status_code == 404
        assert c.get("/v1/orders/123?account=1").status_code == 404
        assert c.get("/nowhere").json()["error"] == "not_found"
        assert c.put("/v1/cart").json()["error"] == "method_not_allowed"
        a = audit(c)
        assert (a["stock_left"], a["reservations"], a["order_rows"]) == (10, [], [])


def test_not_open_yet_is_425_with_retry_after(db: str) -> None:
    with client(db, scenario(), opens_in_s=120) as c:
        assert c.get("/v1/sale").json()["open"] is False
        r = cart(c, 1)
        assert r.status_code == 425 and 119 <= int(r.headers["retry-after"]) <= 121
        assert audit(c)["stock_left"] == 10


def test_expired_hold_goes_back_and_cannot_be_paid(db: str) -> None:
    with client(db, scenario(service={"cart_hold_s": 0.2})) as c:
        rid = cart(c, 1).json()["reservation_id"]
        time.sleep(0.4)
        a = audit(c)
        assert a["stock_left"] == 10 and a["reservations"][0]["status"] == "expired"
        r = pay(c, rid, 1, "late")
        assert r.status_code == 410 and r.json()["error"] == "hold_expired"


def test_failed_payment_releases_the_hold(db: str) -> None:
    sc = scenario(service={"payment": {"failure_prob": 1.0}})
    with client(db, sc) as c:
        rid = cart(c, 1).json()["reservation_id"]
        r = pay(c, rid, 1, "k")
        assert r.status_code == 402 and r.json()["error"] == "payment_failed"
        assert pay(c, rid, 1, "k").status_code == 402  # the stored answer
        assert pay(c, rid, 1, "k2").status_code == 410
        assert audit(c)["stock_left"] == 10


def test_gateway_slower_than_timeout_is_504(db: str) -> None:
    sc = scenario(service={"payment": {"gateway_s": 0.3, "timeout_s": 0.1}})
    with client(db, sc) as c:
        rid = cart(c, 1).json()["reservation_id"]
        r = pay(c, rid, 1, "k")
        assert r.status_code == 504 and r.json()["error"] == "payment_timeout"
        assert audit(c)["stock_left"] == 10


def test_account_limit_is_enforced_and_released(db: str) -> None:
    sc = scenario(defenses={"account_limit": {"enabled": True, "max_units": 2}})
    with client(db, sc) as c:
        assert cart(c, 1, 3).json()["error"] == "limit_reached"
        rid = cart(c, 1, 2).json()["reservation_id"]
        r = cart(c, 1, 1)
        assert r.status_code == 403 and r.json()["error"] == "limit_reached"
        oid = pay(c, rid, 1, "k").json()["order_id"]
        assert c.post(f"/v1/orders/{oid}/cancel", json={"account": 2}).status_code == 404
        done = c.post(f"/v1/orders/{oid}/cancel", json={"account": 1})
        assert done.json()["status"] == "cancelled"
        assert cart(c, 1, 2).status_code == 201
        a = audit(c)
        assert a["cancelled_units"] == 2 and a["units_reserved"] == 2 and a["units_sold"] == 0


def test_rate_limit_per_ip_and_account(db: str) -> None:
    rl = {"enabled": True, "per_account_per_s": 0.01, "per_operator_per_s": 0.01, "burst": 2}
    with client(db, scenario(defenses={"rate_limit": rl})) as c:
        ip = {"X-Forwarded-For": "10.0.0.1"}
        body = {"sku": "SKU-T", "units": 1}
        codes = [c.post("/v1/cart", json={**body, "account": a}, headers=ip) for a in (1, 2, 3)]
        assert [r.status_code for r in codes] == [201, 201, 429]
        assert int(codes[2].headers["retry-after"]) >= 1
        other_ip = c.post("/v1/cart", json={**body, "account": 4}, headers={"X-Forwarded-For": "x"})
        assert other_ip.status_code == 201
        assert audit(c)["units_reserved"] == 3


def test_captcha_gates_the_cart(db: str) -> None:
    with client(db, scenario(defenses={"captcha": {"enabled": True}})) as c:
        assert cart(c, 1).json()["error"] == "captcha_required"
        ch = c.post("/v1/captcha", json={"account": 1}).json()
        a, b = (int(x) for x in ch["prompt"].split("+"))
        wrong = c.post(f"/v1/captcha/{ch['challenge_id']}", json={"account": 1, "answer": "0"})
        assert wrong.status_code == 403
        ch = c.post("/v1/captcha", json={"account": 1}).json()
        a, b = (int(x) for x in ch["prompt"].split("+"))
        ok = c.post(f"/v1/captcha/{ch['challenge_id']}", json={"account": 1, "answer": str(a + b)})
        token = ok.json()["captcha_token"]
        assert cart(c, 2, captcha_token=token).json()["error"] == "captcha_required"
        assert cart(c, 1, captcha_token=token).status_code == 201
        assert cart(c, 1, captcha_token=token).status_code == 403  # single use


def test_admin_needs_the_token_and_validates(db: str) -> None:
    with client(db, scenario()) as c:
        assert c.get("/admin/audit").status_code == 401
        assert c.get("/admin/audit", headers={"Authorization": "Bearer nope"}).status_code == 401
        bad = c.post("/admin/defenses", json={"rate_limit": {"burst": 0}}, headers=ADMIN)
        assert bad.status_code == 422 and "rate_limit" in bad.json()["detail"]
        on = c.post("/admin/defenses", json={"account_limit": {"enabled": True}}, headers=ADMIN)
        assert on.json()["account_limit"] == {"enabled": True, "max_units": 1}
        assert cart(c, 5, 2).json()["error"] == "limit_reached"
        cart(c, 1)
        reset = c.post(
            "/admin/reset?opens_in_s=30",
            json=scenario(sale={"units": 4}).to_toml_dict(),
            headers=ADMIN,
        )
        assert reset.json()["units"] == 4 and reset.json()["open"] is False
        assert audit(c)["reservations"] == []
        bad = c.post("/admin/reset", json={"schema_version": 1}, headers=ADMIN)
        assert bad.status_code == 422 and "sale" in bad.json()["detail"]


def test_resale_adds_units_and_reopens(db: str) -> None:
    with client(db, scenario(sale={"units": 1})) as c:
        assert cart(c, 1).status_code == 201 and cart(c, 2).status_code == 409
        r = c.post("/admin/resale", json={"units": 3, "window_s": 60}, headers=ADMIN).json()
        assert (r["phase"], r["units_added"], r["units"], r["stock_left"]) == ("resale", 3, 4, 3)
        assert cart(c, 2).status_code == 201


def test_openapi_documents_every_route(tmp_path: Path) -> None:
    app = create_app(Runtime(open_store(tmp_path / "s.db"), scenario(), TOKEN))
    with TestClient(app) as c:
        spec = c.get("/openapi.json").json()
    served = {
        (m, r.path)
        for r in app.routes
        for m in getattr(r, "methods", set()) - {"HEAD"}
        if r.path != "/openapi.json"
    }
    documented = {(m.upper(), p) for p, ops in spec["paths"].items() for m in ops}
    assert served == documented
    assert served <= set(OPERATIONS)
    cart_schema = spec["paths"]["/v1/cart"]["post"]["requestBody"]["content"]
    assert cart_schema["application/json"]["schema"]["properties"]["units"]["minimum"] == 1


def test_limiter_queue_limit_and_timeout() -> None:
    import asyncio

    async def scenario_run() -> tuple[list[str], float]:
        lim = CapacityLimiter(workers=1, queue_limit=1, queue_timeout_s=0.05)
        outcomes: list[str] = []

        async def hold(delay: float) -> None:
            try:
                async with lim.slot():
                    outcomes.append("served")
                    await asyncio.sleep(delay)
            except Overloaded as e:
                outcomes.append(e.reason)

        first = asyncio.create_task(hold(0.2))
        await asyncio.sleep(0)
        occupancy_one = lim.occupancy
        await asyncio.gather(hold(0), hold(0))  # one waits and times out, one is refused
        await first
        return outcomes, occupancy_one

    outcomes, occ = asyncio.run(scenario_run())
    assert occ == 1.0
    assert sorted(outcomes) == ["queue full", "queue timeout", "served"]


def test_serve_refuses_a_remote_host() -> None:
    from typer.testing import CliRunner

    from flashsale.cli import app

    r = CliRunner().invoke(app, ["serve", "--host", "0.0.0.0", "--port", "0"])
    assert r.exit_code == 2
    assert "--allow-remote-bind" in r.output


def test_postgres_is_up() -> None:
    """Fails loudly when PostgreSQL is down instead of silently skipping its tests."""
    with psycopg.connect(PG, connect_timeout=5) as con:
        assert con.execute("SELECT 1").fetchone() == (1,)


def test_pg_url_keeps_libpq_options_and_takes_the_schema() -> None:
    from flashsale.service.postgres_store import split_schema

    url = "postgresql://u@h:5432/db?schema=s_1&options=-c%20synchronous_commit%3Doff"
    assert split_schema(url) == (
        "postgresql://u@h:5432/db?options=-c%20synchronous_commit%3Doff",
        "s_1",
    )
    with pytest.raises(ValueError, match="schema"):
        split_schema("postgresql://u@h/db?schema=Bad-Name")
