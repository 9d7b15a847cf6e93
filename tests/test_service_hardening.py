"""Bad input that used to get a 5xx or the wrong answer (issue 13, service), in process
on SQLite and PostgreSQL: each quoted failure, sent as the issue wrote it, and the
answer it gets now. Stalled bodies need a real server: tests/test_service_load.py."""

from __future__ import annotations

from typing import Any

import pytest
from starlette.testclient import TestClient

from flashsale.scenario import MAX_SKU_CHARS, ScenarioError, parse_scenario
from flashsale.service.bodies import MAX_JSON_DEPTH, CartIn

from .test_service import ADMIN, audit, cart, client, pay, scenario


def _error(r: Any, status: int, code: str) -> dict[str, Any]:
    assert r.status_code == status, (r.status_code, r.text[:300])
    body: dict[str, Any] = r.json()
    assert body["error"] == code, body
    return body


def _lenient(db: str, **sections: Any) -> TestClient:
    """A client that hands back a 500 as an answer instead of raising it."""
    c = client(db, scenario(**sections))
    c.raise_server_exceptions = False
    return c


# ------------------------------------------------------------- deep JSON nesting


@pytest.mark.parametrize(
    "body",
    ['{"a":' * 2000, "[" * 8000, '{"a":' * 2000 + "1" + "}" * 2000, "[" * 8000 + "]" * 8000],
    ids=["objects-open", "arrays-open", "objects-closed", "arrays-closed"],
)
def test_deep_nesting_is_400_not_a_recursion_error(db: str, body: str) -> None:
    with _lenient(db) as c:
        r = c.post("/v1/cart", content=body)
        assert "nested more than" in _error(r, 400, "malformed_json")["detail"]
        r = c.post("/admin/reset", content=body, headers=ADMIN)
        _error(r, 400, "malformed_json")
        r = c.post("/admin/defenses", content=body, headers=ADMIN)
        _error(r, 400, "malformed_json")
        assert audit(c)["stock_left"] == 10


def test_the_depth_limit_is_exact(db: str) -> None:
    """MAX_JSON_DEPTH levels are JSON the cart then refuses for its shape (422); one
    more is refused as JSON (400), however few bytes it takes."""

    def nested(levels: int) -> str:
        return '{"account": ' + "[" * (levels - 1) + "]" * (levels - 1) + "}"

    with _lenient(db) as c:
        _error(c.post("/v1/cart", content=nested(MAX_JSON_DEPTH)), 422, "invalid_body")
        _error(c.post("/v1/cart", content=nested(MAX_JSON_DEPTH + 1)), 400, "malformed_json")


def test_an_integer_of_5000_digits_is_400(db: str) -> None:
    with _lenient(db) as c:
        r = c.post("/v1/cart", content='{"account": ' + "9" * 5000 + ', "sku": "SKU-T"}')
        _error(r, 400, "malformed_json")


# ---------------------------------------------------------------------- path ids


@pytest.mark.parametrize("raw", ["%C2%B2", "%D9%A1", "%EF%BC%91", "1%C2%B2", "+1", "-1", " 1"])
def test_path_ids_are_ascii_digits_only(db: str, raw: str) -> None:
    """``%C2%B2`` (superscript two) was a ValueError (500) on the order, its cancel and
    the CAPTCHA; ``%D9%A1`` (Arabic-Indic one) read as order 1. Both, and every other id that
    is not ASCII digits, are 404 now, even when order 1 exists and its account asks."""
    with _lenient(db) as c:
        rid = cart(c, 1).json()["reservation_id"]
        oid = pay(c, rid, 1, "k").json()["order_id"]
        assert oid == 1
        assert c.get("/v1/orders/1?account=1").status_code == 200
        _error(c.get(f"/v1/orders/{raw}?account=1"), 404, "unknown_order")
        _error(c.post(f"/v1/orders/{raw}/cancel", json={"account": 1}), 404, "unknown_order")
        c.post("/v1/captcha", json={"account": 1})  # challenge 1 exists
        r = c.post(f"/v1/captcha/{raw}", json={"account": 1, "answer": "2"})
        _error(r, 404, "unknown_challenge")
        c.post("/admin/defenses", json={"lottery": {"enabled": True}}, headers=ADMIN)
        _error(c.get(f"/v1/lottery/{raw}"), 404, "unknown_account")
        assert c.get("/v1/orders/1?account=1").json()["status"] == "paid"


def test_every_account_id_a_body_takes_has_a_lottery_result(db: str) -> None:
    """The largest account a body accepts (2**63 - 1, 19 digits) may ask for its
    result too; one more is no account (404), not a 500."""
    top = 2**63 - 1
    with _lenient(db, defenses={"lottery": {"enabled": True}}) as c:
        assert c.post("/v1/lottery", json={"account": top}).status_code == 201
        r = c.get(f"/v1/lottery/{top}")
        assert r.status_code == 200 and r.json()["entered"] is True, r.text
        _error(c.get(f"/v1/lottery/{top + 1}"), 404, "unknown_account")
        _error(c.get(f"/v1/lottery/{'9' * 400}"), 404, "unknown_account")


# ---------------------------------------------------------------- order privacy


def test_an_order_answers_only_to_its_account(db: str) -> None:
    with _lenient(db) as c:
        rid = cart(c, 7).json()["reservation_id"]
        oid = pay(c, rid, 7, "k").json()["order_id"]
        mine = c.get(f"/v1/orders/{oid}?account=7")
        assert mine.status_code == 200 and mine.json()["account"] == 7
        theirs = _error(c.get(f"/v1/orders/{oid}?account=8"), 404, "unknown_order")
        nobody = _error(c.get(f"/v1/orders/{oid + 1}?account=8"), 404, "unknown_order")
        assert theirs.keys() == nobody.keys()  # nothing tells "not yours" from "none"
        assert _error(c.get(f"/v1/orders/{oid}"), 422, "invalid_query")["field"] == "account"
        for bad in ("", "x", "-1", "%D9%A1", "9" * 30):
            _error(c.get(f"/v1/orders/{oid}?account={bad}"), 422, "invalid_query")
        _error(c.post(f"/v1/orders/{oid}/cancel", json={"account": 8}), 404, "unknown_order")
        assert c.get(f"/v1/orders/{oid}?account=7").json()["status"] == "paid"


# ----------------------------------------------- SKU and channel name lengths


def test_the_scenario_takes_exactly_the_names_a_cart_can_carry(db: str) -> None:
    """A 65-character SKU or channel name validated, then every cart was refused 422;
    now the scenario refuses it, naming the limit, and 64 characters sell."""
    assert CartIn.model_fields["sku"].metadata[-1].max_length == MAX_SKU_CHARS
    long = "S" * (MAX_SKU_CHARS + 1)
    base: dict[str, Any] = {"schema_version": 1, "name": "n", "humans": {"count": 5}}
    with pytest.raises(ScenarioError, match=rf"sale\.sku: at most {MAX_SKU_CHARS} characters"):
        parse_scenario({**base, "sale": {"units": 5, "sku": long}})
    channel = {"name": long, "stock_share": 1.0, "demand_share": 1.0}
    with pytest.raises(ScenarioError, match=rf"channels\[0\]\.name: at most {MAX_SKU_CHARS}"):
        parse_scenario({**base, "sale": {"units": 5, "channels": [channel]}})
    sku, name = "S" * MAX_SKU_CHARS, "é" * MAX_SKU_CHARS
    channel = {"name": name, "stock_share": 1.0, "demand_share": 1.0}
    with _lenient(db, sale={"sku": sku, "channels": [channel]}) as c:
        r = c.post("/v1/cart", json={"account": 1, "sku": sku, "units": 1, "channel": name})
        assert r.status_code == 201, r.text


def test_a_channel_name_no_database_keeps_is_refused_on_reset(db: str) -> None:
    """A NUL character in a channel name was a 500 (PostgreSQL ``DataError``) on
    ``/admin/reset``, found by the fuzz test; now 422, and the sale stays as it was."""
    data = scenario().to_toml_dict()
    data["sale"]["channels"][0]["name"] = "w\x00b"
    with _lenient(db) as c:
        r = c.post("/admin/reset", json=data, headers=ADMIN)
        assert _error(r, 422, "invalid_scenario")["field"] == "sale.channels"
        assert c.get("/v1/sale").json()["channels"] == {"web": 10}
