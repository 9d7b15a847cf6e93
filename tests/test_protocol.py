"""The target protocol (flashsale.protocol) as a user meets it: templates filled into
requests, answers read into meanings and captures, a bad table refused naming its
field, the reference protocol reading the reference service's documented answers,
the checks made before any traffic (flashsale.replay.target.check_protocol), the
Python escape hatch (flashsale.replay.custom), protocol errors met by a journey
against the real reference service in process, and the watchdog that fails a
replay whose target does not speak the protocol (flashsale.replay.watchdog).

Every expected value is written out by hand from the documentation (the
reference service's answers from flashsale/service/__init__.py), never computed
by the code under test.
"""

from __future__ import annotations

import contextlib
import copy
import json
import math
import select
import subprocess
import sys
import time
import tomllib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from typer.testing import CliRunner

from flashsale.arrivals import BOT, HUMAN
from flashsale.children import die_with_parent
from flashsale.cli import app
from flashsale.policy import Answer
from flashsale.protocol import (
    AnswerRule,
    ProtocolError,
    Reply,
    Target,
    capture,
    json_at,
    match,
    placeholders,
    render,
    render_body,
)
from flashsale.replay.custom import Answered, handles, load_steps, meaning_of
from flashsale.replay.journey import Buyer, Journey, JourneyLog
from flashsale.replay.preflight import HttpClient
from flashsale.replay.target import (
    TargetError,
    apply_target_config,
    check_protocol,
    load_accounts,
    load_custom,
)
from flashsale.replay.watchdog import MIN_REQUESTS, Tally, problem, verdict
from flashsale.scenario import Scenario, ScenarioError, load_scenario, parse_scenario

from . import _custom_protocol
from ._inprocess import T0, Clock, Conductor, Sent, StepClient, audit, service
from .conftest import ROOT, SCENARIOS

SMOKE = str(SCENARIOS / "smoke.toml")
cli = CliRunner()


# ------------------------------------------------------------------------ helpers

BASE: dict[str, Any] = {
    "schema_version": 1,
    "name": "protocol",
    "seed": 3,
    "sale": {"sku": "SKU-P", "units": 10, "window_s": 600},
    "humans": {"count": 4, "think_s": 1.0, "refresh_s": 1.0, "retries_on_error": 2},
    "bots": {"operators": 1, "accounts_per_operator": 2, "max_retries": 3},
    "service": {"workers": 4, "queue_limit": 50, "cart_hold_s": 60},
}

CART = {"method": "POST", "path": "/cart", "answers": [{"status": 201, "meaning": "ok"}]}
PAY = {"method": "POST", "path": "/pay", "answers": [{"status": 201, "meaning": "ok"}]}
PAY_OK = {"status": 200, "meaning": "ok"}


def data(target: dict[str, Any] | None = None, **sections: Any) -> dict[str, Any]:
    """BASE with ``target`` as its [target] table and other tables merged key by key."""
    out = copy.deepcopy(BASE)
    for key, value in sections.items():
        out[key] = {**out.get(key, {}), **value}
    if target is not None:
        out["target"] = target
    return out


def scenario(target: dict[str, Any] | None = None, **sections: Any) -> Scenario:
    return parse_scenario(data(target, **sections), "f.toml")


def none_target(**over: Any) -> dict[str, Any]:
    """A protocol for another shop: cart and pay, nothing else."""
    return {"protocol": "none", "steps": {"cart": CART, "pay": PAY}, **over}


def rule(**kw: Any) -> AnswerRule:
    return AnswerRule.model_validate(kw)


def jreply(status: int, body: Any, headers: dict[str, str] | None = None) -> Reply:
    """An answer with a JSON body, as a client reads it (lower-case header names)."""
    return Reply(status, body, json.dumps(body), headers or {})


def err(status: int, code: str, **extra: Any) -> Reply:
    """One of the reference service's errors: ``{"error", "detail", "field"}``."""
    return jreply(status, {"error": code, "detail": f"{code} (detail)", "field": None, **extra})


# ---------------------------------------------------------------------- templates


def test_render_url_quotes_values_in_a_path_but_not_the_template() -> None:
    values = {"account": 7, "sku": "A B/C?&#", "flag": True}
    path = render("/v1/lottery/{account}/{sku}?gift={flag}", values, quote_values=True)
    assert path == "/v1/lottery/7/A%20B%2FC%3F%26%23?gift=true"
    # outside a path (a header, a form field) the value goes as it is
    assert render("{sku}", values) == "A B/C?&#"


def test_render_writes_booleans_as_json_does_and_an_unset_optional_as_nothing() -> None:
    values = {"yes": True, "no": False, "zero": 0, "empty": "", "unset": None}
    assert render("{yes}|{no}|{zero}|{empty}|{unset?}|{never?}", values) == "true|false|0|||"
    assert render("{{literal}} {zero}", values) == "{literal} 0"


def test_render_names_the_variable_that_has_no_value() -> None:
    with pytest.raises(ProtocolError, match=r"^\{reservation_id\} has no value here"):
        render("/v1/checkout/{reservation_id}", {"account": 1})
    with pytest.raises(ProtocolError, match=r"^\{token\} has no value"):
        render("Bearer {token}", {"token": None})  # captured as null: still no value
    with pytest.raises(ProtocolError, match=r"^\{env\.SHOP_KEY\} has no value"):
        render("{env.SHOP_KEY}", {})


def test_render_body_keeps_a_whole_value_placeholders_type() -> None:
    values = {"account": 5, "units": 2, "gift": True, "price": 9.5, "sku": "S-1"}
    tpl = {
        "account": "{account}",
        "units": "{units}",
        "gift": "{gift}",
        "price": "{price}",
        "label": "{units} x {sku}",  # not a whole value: text
        "fixed": 3,
        "flag": False,
    }
    body = render_body(tpl, values)
    assert body == {
        "account": 5,
        "units": 2,
        "gift": True,
        "price": 9.5,
        "label": "2 x S-1",
        "fixed": 3,
        "flag": False,
    }
    assert type(body["units"]) is int and type(body["gift"]) is bool
    # a whole body that is one placeholder (the reference reset's "{scenario}")
    assert render_body("{scenario}", {"scenario": {"name": "x"}}) == {"name": "x"}


def test_render_body_leaves_out_a_key_whose_optional_value_is_unset() -> None:
    tpl = {
        "account": "{account}",
        "captcha_token": "{captcha_token?}",
        "admission_token": "{admission_token?}",
        "note": "for {who?}",  # not a whole value: an empty part, the key stays
        "order": {
            "lines": [{"sku": "{sku}", "qty": "{units}", "coupon": "{coupon?}"}, "{units}"],
            "meta": {"deep": {"journey": "{journey}", "zero": "{zero?}"}},
        },
    }
    values = {"account": 1, "admission_token": "adm", "sku": "S", "units": 3, "journey": 4}
    values["zero"] = 0  # a value, though falsy
    assert render_body(tpl, values) == {
        "account": 1,
        "admission_token": "adm",
        "note": "for ",
        "order": {
            "lines": [{"sku": "S", "qty": 3}, 3],
            "meta": {"deep": {"journey": 4, "zero": 0}},
        },
    }


def test_render_body_names_a_required_variable_with_no_value() -> None:
    with pytest.raises(ProtocolError, match=r"^\{basket_id\} has no value"):
        render_body({"lines": [{"basket": "{basket_id}"}]}, {"account": 1})


def test_placeholders_of_a_good_template() -> None:
    tpl = "/{account}/{env.API_KEY}/{user.e-mail}/{cookie.csrftoken}/{captcha_token?}/{{x}}"
    assert placeholders(tpl) == [
        ("account", False),
        ("env.API_KEY", False),
        ("user.e-mail", False),
        ("cookie.csrftoken", False),
        ("captcha_token", True),
    ]


@pytest.mark.parametrize(
    ("template", "why"),
    [
        ("/x/{units:>3}", "{units}: no format spec or conversion in a template"),
        ("/x/{units!r}", "{units}: no format spec or conversion in a template"),
        ("/x/{units", "expected '}' before end of string"),
        ("/x/units}", "Single '}' encountered"),
        ("/x/{}", "{} is not a variable"),
        ("/x/{0}", "{0} is not a variable"),
        ("/x/{a.b}", "{a.b} is not a variable"),
        ("/x/{lines[0]}", "{lines[0]} is not a variable"),
        ("/x/{secret.KEY}", "{secret.KEY} is not a variable"),
        ("/x/{two words}", "{two words} is not a variable"),
    ],
)
def test_placeholders_refuses_a_malformed_template(template: str, why: str) -> None:
    with pytest.raises(ValueError) as e:
        placeholders(template)
    assert why in str(e.value)
    assert not isinstance(e.value, ProtocolError)  # a table error, not a run-time one


# ----------------------------------------------------------------------- matching

ABSENT = object()


@pytest.mark.parametrize(
    ("status", "hits", "misses"),
    [
        (201, [201], [200, 409, 501]),
        ([404, 409], [404, 409], [403, 410, 200]),
        ("4xx", [400, 404, 429, 499], [200, 302, 500, 503]),
        ("5xx", [500, 503, 599], [499, 200]),
        (None, [200, 302, 404, 503], []),  # absent: any answer that came
    ],
)
def test_status_conditions(status: Any, hits: list[int], misses: list[int]) -> None:
    r = rule(status=status, meaning="ok") if status is not None else rule(meaning="ok")
    for code in hits:
        assert r.matches(Reply(code)), code
    for code in misses:
        assert not r.matches(Reply(code)), code


def test_json_equality_never_takes_a_boolean_for_a_number() -> None:
    is_true = rule(json={"open": True}, meaning="ok")
    assert is_true.matches(jreply(200, {"open": True}))
    assert not is_true.matches(jreply(200, {"open": 1}))
    assert not is_true.matches(jreply(200, {"open": "true"}))
    one = rule(json={"n": 1}, meaning="ok")
    assert not one.matches(jreply(200, {"n": True}))
    assert one.matches(jreply(200, {"n": 1.0}))  # one JSON number
    zero = rule(json={"n": 0}, meaning="ok")
    assert not zero.matches(jreply(200, {"n": False}))
    text = rule(json={"code": "1"}, meaning="ok")
    assert not text.matches(jreply(200, {"code": 1}))
    # absent, null, or no JSON at all: no match
    assert not one.matches(jreply(200, {}))
    assert not one.matches(jreply(200, {"n": None}))
    assert not one.matches(Reply(200, None, "n=1"))


def test_json_paths_are_dotted_with_list_indexes() -> None:
    body = {"data": {"lines": [{"sku": "A"}, {"sku": "B", "qty": 2}], "count": 2}}
    assert json_at(body, "data.lines.1.sku") == (True, "B")
    assert json_at(body, "data.count") == (True, 2)
    assert json_at(body, "data.lines.2.sku") == (False, None)  # past the end
    assert json_at(body, "data.lines.-1.sku") == (False, None)  # no negative index
    assert json_at(body, "data.count.0") == (False, None)  # a number has no parts
    assert json_at([10, 20], "1") == (True, 20)
    assert json_at({"a": None}, "a") == (True, None)  # present, null
    r = rule(json={"data.lines.1.sku": "B", "data.lines.1.qty": {"ge": 2}}, meaning="ok")
    assert r.matches(jreply(200, body))
    assert not r.matches(jreply(200, {"data": {"lines": [{"sku": "B", "qty": 2}]}}))


@pytest.mark.parametrize(
    ("op", "value", "holds"),
    [
        ({"gt": 0}, 1, True),
        ({"gt": 0}, 0.5, True),
        ({"gt": 0}, 0, False),
        ({"gt": 0}, True, False),  # a boolean is not a number
        ({"gt": 0}, "5", False),  # nor is text
        ({"gt": 0}, ABSENT, False),
        ({"ge": 2}, 2, True),
        ({"ge": 2}, 1.99, False),
        ({"lt": 1}, 0, True),
        ({"lt": 1}, 1, False),
        ({"le": 0}, 0, True),
        ({"le": 0}, -3, True),
        ({"le": 0}, 0.1, False),
        ({"ge": 1, "le": 3}, 2, True),
        ({"ge": 1, "le": 3}, 4, False),
        ({"ne": "open"}, "closed", True),
        ({"ne": "open"}, "open", False),
        ({"ne": 1}, True, True),  # true is not 1
        ({"in": ["sold_out", "sale_closed"]}, "sale_closed", True),
        ({"in": ["sold_out", "sale_closed"]}, "not_open", False),
        ({"in": [1, 2]}, True, False),
        ({"in": [True]}, True, True),
        ({"exists": True}, None, True),  # present, though null
        ({"exists": True}, 0, True),
        ({"exists": True}, ABSENT, False),
        ({"exists": False}, ABSENT, True),
        ({"exists": False}, None, False),
        ({"exists": False}, 0, False),
    ],
)
def test_match_operators(op: dict[str, Any], value: Any, holds: bool) -> None:
    r = rule(status=200, json={"field": op}, meaning="ok")
    body = {"other": 1} if value is ABSENT else {"field": value, "other": 1}
    assert r.matches(jreply(200, body)) is holds


def test_a_body_regex_reads_an_answer_that_is_not_json() -> None:
    sold = rule(status=200, body=r"(?i)sold\s+out", meaning="sold_out")
    assert match([sold], Reply(200, None, "<h1>Sorry, SOLD   out!</h1>")) == (Answer.SOLD_OUT, sold)
    assert match([sold], Reply(200, None, "<h1>Add to basket</h1>")) is None
    assert match([sold], Reply(404, None, "sold out")) is None  # every condition must hold


def test_the_first_matching_rule_wins() -> None:
    rules = [
        rule(status=200, json={"state": "open"}, meaning="ok"),
        rule(status=200, meaning="not_open"),
        rule(status=200, json={"state": "open"}, meaning="sold_out"),  # never reached
    ]
    assert match(rules, jreply(200, {"state": "open"})) == (Answer.OK, rules[0])
    assert match(rules, jreply(200, {"state": "ended"})) == (Answer.NOT_OPEN, rules[1])


def test_a_targets_common_answers_come_after_a_steps_own() -> None:
    t = Target.model_validate(
        {
            "protocol": "none",
            "steps": {
                "cart": {
                    "method": "POST",
                    "path": "/cart",
                    "answers": [
                        {"status": 201, "meaning": "ok"},
                        {"status": 409, "json": {"error": "sold_out"}, "meaning": "retry"},
                    ],
                },
                "pay": {"method": "POST", "path": "/pay"},  # only the common rules
            },
            "answers": [
                {"json": {"error": "sold_out"}, "meaning": "sold_out"},
                {"status": 429, "meaning": "rate_limited"},
            ],
        }
    )
    assert t.rules("cart") == [*t.steps["cart"].answers, *t.answers]
    assert t.rules("pay") == t.answers
    sold_409 = err(409, "sold_out")
    assert match(t.rules("cart"), sold_409) == (Answer.RETRY, t.steps["cart"].answers[1])
    assert match(t.rules("cart"), err(410, "sold_out")) == (Answer.SOLD_OUT, t.answers[0])
    assert match(t.rules("pay"), sold_409) == (Answer.SOLD_OUT, t.answers[0])
    assert match(t.rules("cart"), err(429, "slow_down")) == (Answer.RATE_LIMITED, t.answers[1])
    assert match(t.rules("pay"), jreply(201, {})) is None


def test_no_answer_is_always_ambiguous_and_an_unknown_answer_is_none() -> None:
    anything = [rule(meaning="ok")]  # any answer that came
    assert match(anything, Reply(0)) == (Answer.AMBIGUOUS, None)
    assert match([], Reply(0)) == (Answer.AMBIGUOUS, None)
    assert match(anything, Reply(500)) == (Answer.OK, anything[0])
    assert match([rule(status=201, meaning="ok")], err(500, "boom")) is None
    assert match([], jreply(200, {})) is None


# ----------------------------------------------------------------------- captures


def test_captures_from_json_headers_cookies_and_the_status() -> None:
    r = rule(
        status=201,
        meaning="ok",
        capture={
            "basket": "json:data.basket.id",
            "first": "json:lines.0",
            "closed": "json:closed",
            "token": "header:X-Auth-Token",
            "token_too": "header:x-AUTH-token",
            "session": "cookie:sessionid",
            "code": "status",
            "wait": "header:Retry-After?",
            "gone": "json:nothing?",
            "no_cookie": "cookie:csrftoken?",
        },
    )
    reply = Reply(
        201,
        {"data": {"basket": {"id": "b-9"}}, "lines": [7, 8], "closed": False},
        "{...}",
        {"x-auth-token": "t0k", "retry-after": "3"},
        {"sessionid": "s1"},
    )
    assert capture(r, reply) == {
        "basket": "b-9",
        "first": 7,
        "closed": False,
        "token": "t0k",
        "token_too": "t0k",
        "session": "s1",
        "code": 201,
        "wait": "3",
    }  # an optional capture that is missing is not set at all


@pytest.mark.parametrize(
    ("source", "reply"),
    [
        ("json:reservation_id", jreply(201, {"basket_id": 4})),
        ("json:reservation_id", Reply(201, None, "created")),  # not JSON at all
        ("json:data.0.id", jreply(201, {"data": []})),
        ("header:X-Auth-Token", jreply(201, {}, {"x-other": "1"})),
        ("cookie:sessionid", Reply(201, {}, "{}", {}, {"csrftoken": "c"})),
    ],
)
def test_a_required_capture_missing_is_a_protocol_error_naming_its_source(
    source: str, reply: Reply
) -> None:
    r = rule(status=201, meaning="ok", capture={"x": source})
    with pytest.raises(ProtocolError) as e:
        capture(r, reply)
    assert str(e.value) == f"the answer matched status 201 -> ok but lacks {source}"


# --------------------------------------------------------------------- validation


def refused(target: dict[str, Any], **sections: Any) -> str:
    with pytest.raises(ScenarioError) as e:
        scenario(target, **sections)
    text = str(e.value)
    assert "\n" not in text, text  # one problem, one line
    return text


@pytest.mark.parametrize(
    ("target", "field", "why"),
    [
        ({"protocol": "none"}, "steps", "at least cart and pay; missing cart, pay"),
        (
            {"protocol": "none", "steps": {"cart": CART}},
            "steps",
            "at least cart and pay; missing pay",
        ),
        (
            none_target(steps={"cart": {"path": "/cart"}, "pay": PAY}),
            "steps.cart.answers",
            "empty (an answer map is required)",
        ),
        (
            {"steps": {"cart": {"path": "/v1/cart/{basket_id}"}}},
            "steps.cart",
            "{basket_id} is neither a variable",
        ),
        (
            none_target(headers={"X-Token": "{token}"}),
            "steps.cart",
            "{token} is neither a variable",
        ),
        (
            {"steps": {"cart": {"answers": [{"status": 201, "meaning": "great"}]}}},
            "steps.cart.answers[0].meaning",
            "Input should be 'ok', 'sold_out'",
        ),
        (
            {"steps": {"cart": {"answers": [{"status": 99, "meaning": "ok"}]}}},
            "steps.cart.answers[0].status",
            "a status is a code from 100 to 599, a list of codes, or a class ('4xx') (got 99)",
        ),
        (
            {"steps": {"cart": {"answers": [{"status": "6xx", "meaning": "ok"}]}}},
            "steps.cart.answers[0].status",
            "a status is a code from 100 to 599",
        ),
        (
            {"steps": {"cart": {"answers": [{"status": [], "meaning": "ok"}]}}},
            "steps.cart.answers[0].status",
            "a status is a code from 100 to 599",
        ),
        (
            {"steps": {"cart": {"answers": [{"status": [201, 600], "meaning": "ok"}]}}},
            "steps.cart.answers[0].status",
            "a status is a code from 100 to 599",
        ),
        (
            {"steps": {"cart": {"answers": [{"status": True, "meaning": "ok"}]}}},
            "steps.cart.answers[0].status",
            "a status is a code from 100 to 599",
        ),
        (
            {"steps": {"cart": {"answers": [{"body": "(", "meaning": "ok"}]}}},
            "steps.cart.answers[0].body",
            "not a regular expression",
        ),
        (
            {"steps": {"cart": {"form": {"units": "{units}"}}}},  # the reference's json stays
            "steps.cart",
            "a step sends a json body or a form body, not both",
        ),
        (
            {"steps": {"pay": {"headers": {"Idempotency-Key": "{idempotency_key}\r\nX-Evil: 1"}}}},
            "steps.pay.headers.Idempotency-Key",
            "a header value holds no line breaks or control characters",
        ),
        (
            {"headers": {"X-Shop": "a\nb"}},
            "headers.X-Shop",
            "a header value holds no line breaks or control characters",
        ),
        (
            {"headers": {"X Shop": "1"}},
            "headers.X Shop",
            "'X Shop' is not an HTTP header name",
        ),
        (
            {"steps": {"cart": {"headers": {"X:Y": "1"}}}},
            "steps.cart.headers.X:Y",
            "'X:Y' is not an HTTP header name",
        ),
        ({"patience_header": "X Patience"}, "patience_header", "is not an HTTP header name"),
        (
            {"steps": {"cart": {"path": "v1/cart"}}},
            "steps.cart.path",
            "a path starts with '/' and holds no spaces or control characters",
        ),
        ({"python_class": "myshop"}, "python_class", "a class is named 'package.module:ClassName'"),
        ({"python_class": "my shop:Steps"}, "python_class", "a class is named"),
        (
            none_target(reset={"path": "/reset", "command": ["{python}", "reset.py"]}),
            "reset",
            "a hook has a path (an HTTP request) or a command, exactly one",
        ),
        (
            none_target(audit={"method": "GET"}),
            "audit",
            "a hook has a path (an HTTP request) or a command, exactly one",
        ),
        (
            none_target(audit={"path": "/audit", "fields": {"orders": "orders"}}),
            "audit.fields",
            "an audit maps at least units_sold",
        ),
        (
            none_target(audit={"path": "/audit/{account}"}),
            "audit",
            "{account} is not a hook variable",
        ),
    ],
)
def test_a_bad_protocol_table_is_refused_naming_its_field(
    target: dict[str, Any], field: str, why: str
) -> None:
    text = refused(target)
    assert text.startswith(f"f.toml: target.{field}: "), text
    assert why in text, text


@pytest.mark.parametrize(
    "capture_source",
    ["xml:a", "json:", "json:a b", "status?", "header:X??", "cookie", "json:a?b"],
)
def test_a_bad_capture_is_refused(capture_source: str) -> None:
    target = {
        "steps": {
            "cart": {
                "answers": [{"status": 201, "meaning": "ok", "capture": {"x": capture_source}}]
            }
        }
    }
    text = refused(target)
    assert text.startswith("f.toml: target.steps.cart.answers[0].capture.x: a capture is "), text


def _validate(*sets: str, path: str = SMOKE) -> tuple[int, list[str]]:
    args = ["validate", path]
    for s in sets:
        args += ["--set", s]
    res = cli.invoke(app, args)
    return res.exit_code, res.output.splitlines()


@pytest.mark.parametrize(
    ("sets", "line"),
    [
        (
            ["target.protocol=none"],
            "target.steps: a protocol declares at least cart and pay; missing cart, pay",
        ),
        (
            [
                "target.protocol=none",
                'target.steps.cart={path="/cart"}',
                'target.steps.pay={path="/pay",answers=[{meaning="ok"}]}',
            ],
            "target.steps.cart.answers: empty (an answer map is required)",
        ),
        (
            ["target.steps.cart.path=/v1/cart/{basket}"],
            "target.steps.cart: {basket} is neither a variable",
        ),
        (
            ['target.steps.cart.answers=[{status=201,meaning="bought"}]'],
            "target.steps.cart.answers[0].meaning: Input should be 'ok'",
        ),
        (
            ['target.steps.pay.answers=[{status="6xx",meaning="ok"}]'],
            "target.steps.pay.answers[0].status: a status is a code from 100 to 599",
        ),
        (
            ['target.steps.cart.answers=[{status=201,meaning="ok",capture={id="body:id"}}]'],
            "target.steps.cart.answers[0].capture.id: a capture is 'json:PATH'",
        ),
        (["target.steps.cart.path=v1/cart"], "target.steps.cart.path: a path starts with '/'"),
        (
            ['target.steps.cart.form={units="{units}"}'],
            "target.steps.cart: a step sends a json body or a form body, not both",
        ),
        (
            ['target.headers={X-Shop="a\\r\\nX-Evil: 1"}'],
            "target.headers.X-Shop: a header value holds no line breaks",
        ),
        (
            ['target.steps.view.headers={Accept="a\\nb"}'],
            "target.steps.view.headers.Accept: a header value holds no line breaks",
        ),
        (['target.headers={"X Shop"="1"}'], "target.headers.X Shop: 'X Shop' is not an HTTP"),
        (["target.python_class=myshop"], "target.python_class: a class is named"),
        (
            ['target.reset={path="/reset", command=["{python}", "reset.py"]}'],
            "target.reset: a hook has a path (an HTTP request) or a command, exactly one",
        ),
        (
            [
                "target.protocol=none",
                'target.steps.cart={path="/c",answers=[{meaning="ok"}]}',
                'target.steps.pay={path="/p",answers=[{meaning="ok"}]}',
                'target.audit={path="/audit",fields={orders="orders"}}',
            ],
            "target.audit.fields: an audit maps at least units_sold",
        ),
    ],
)
def test_validate_refuses_a_bad_protocol_in_one_line(sets: list[str], line: str) -> None:
    code, lines = _validate(*sets)
    assert code == 2, lines
    assert len(lines) == 1, lines
    assert lines[0].startswith(f"error: {SMOKE}: {line}"), lines


def test_the_reference_protocol_round_trips() -> None:
    sc = load_scenario(SMOKE)
    assert sc.target == Target()  # smoke.toml has no [target]: the reference protocol
    assert parse_scenario(sc.to_toml_dict()) == sc
    assert parse_scenario(tomllib.loads(sc.to_toml())) == sc
    assert sc.target.steps["cart"].path == "/v1/cart"
    assert sc.target.steps["pay"].headers == {"Idempotency-Key": "{idempotency_key}"}


def test_set_changes_one_path_and_keeps_the_rest_of_the_reference_protocol() -> None:
    ref = load_scenario(SMOKE).target
    t = load_scenario(SMOKE, ["target.steps.cart.path=/api/cart"]).target
    assert t.steps["cart"].path == "/api/cart"
    assert t.steps["cart"] == ref.steps["cart"].model_copy(update={"path": "/api/cart"})
    assert {k: v for k, v in t.steps.items() if k != "cart"} == {
        k: v for k, v in ref.steps.items() if k != "cart"
    }
    assert t.model_copy(update={"steps": ref.steps}) == ref
    code, lines = _validate("target.steps.cart.path=/api/cart")
    assert code == 0 and lines[0].startswith(f"ok: {SMOKE}"), lines
    shown = cli.invoke(app, ["show", SMOKE, "--json", "--set", "target.steps.cart.path=/api/cart"])
    steps = json.loads(shown.output)["target"]["steps"]
    assert (steps["cart"]["path"], steps["pay"]["path"]) == ("/api/cart", "/v1/checkout")


def test_protocol_none_drops_the_reference_steps_hooks_and_common_answers() -> None:
    sc = scenario(none_target())
    t = sc.target
    assert sorted(t.steps) == ["cart", "pay"]
    assert t.steps["cart"].path == "/cart" and t.steps["cart"].json_ is None
    assert (t.reset, t.audit, t.answers, t.forwarded_for, t.patience_header) == (
        None,
        None,
        [],
        False,
        None,
    )
    assert parse_scenario(sc.to_toml_dict()) == sc
    assert parse_scenario(tomllib.loads(sc.to_toml())) == sc


def test_a_protocol_with_comparisons_and_hooks_round_trips(tmp_path: Path) -> None:
    cfg = tmp_path / "shop.toml"
    cfg.write_text(
        '[target]\nprotocol = "none"\nheaders = { X-Shop = "{env.SHOP_KEY}" }\n'
        'audit = { command = ["{python}", "audit.py"], fields = { units_sold = "sold" } }\n'
        '[target.steps.cart]\nmethod = "POST"\npath = "/c/{sku}"\nform = { q = "{units}" }\n'
        "answers = [\n"
        '  { status = [200, 201], json = { a = { exists = false }, b = { in = ["x", 1, true] },'
        ' c = { ne = 0 }, d = { gt = 0.5, le = 3 } }, body = "ok", meaning = "ok",'
        ' capture = { id = "json:id", s = "cookie:sid?", st = "status" } },\n'
        '  { status = "4xx", meaning = "rejected" },\n]\n'
        '[target.steps.pay]\npath = "/p/{id}"\nanswers = [{ meaning = "ok" }]\n'
    )
    sc = apply_target_config(load_scenario(SMOKE), cfg)
    assert sc.target.audit is not None and sc.target.audit.cwd == str(tmp_path.resolve())
    assert parse_scenario(sc.to_toml_dict()) == sc
    assert parse_scenario(tomllib.loads(sc.to_toml())) == sc
    cart = sc.target.steps["cart"].answers[0]
    assert cart.describe() == (
        'status [200, 201], a absent, b in ["x", 1, true], c != 0, d > 0.5 and <= 3.0, '
        "body ~ 'ok' -> ok"
    )


# ------------------------------------------- the reference protocol, as documented

V = {"sku": "S", "phase": "main", "units": 10, "channels": {"web": 3}}

DOCUMENTED: list[tuple[str, str, Reply, Answer | None, dict[str, Any]]] = [
    # (case, step, answer, meaning (None: a protocol error), captures)
    (
        "view: open, stock left",
        "view",
        jreply(200, {**V, "open": True, "opens_in_s": 0.0, "closes_in_s": 540.0, "stock_left": 3}),
        Answer.OK,
        {},
    ),
    (
        "view: open, none left",
        "view",
        jreply(200, {**V, "open": True, "opens_in_s": 0.0, "closes_in_s": 540.0, "stock_left": 0}),
        Answer.SOLD_OUT,
        {},
    ),
    (
        "view: closed",
        "view",
        jreply(200, {**V, "open": False, "opens_in_s": 0.0, "closes_in_s": 0.0, "stock_left": 4}),
        Answer.SOLD_OUT,
        {},
    ),
    (
        "view: not open yet",
        "view",
        jreply(
            200, {**V, "open": False, "opens_in_s": 12.5, "closes_in_s": 612.5, "stock_left": 10}
        ),
        Answer.NOT_OPEN,
        {"opens_in_s": 12.5},
    ),
    (
        "cart: 201 held",
        "cart",
        jreply(201, {"reservation_id": 41, "units": 2, "expires_in_s": 60.0}),
        Answer.OK,
        {"reservation_id": 41},
    ),
    ("cart: 409 sold_out", "cart", err(409, "sold_out"), Answer.SOLD_OUT, {}),
    ("cart: 409 sale_closed", "cart", err(409, "sale_closed"), Answer.SOLD_OUT, {}),
    (
        "cart: 425 not_open",
        "cart",
        jreply(425, {"error": "not_open"}, {"retry-after": "4"}),
        Answer.NOT_OPEN,
        {},
    ),
    ("cart: 429 rate_limited", "cart", err(429, "rate_limited"), Answer.RATE_LIMITED, {}),
    (
        "cart: 403 limit_reached",
        "cart",
        err(403, "limit_reached", allowed_units=1),
        Answer.LIMIT_REACHED,
        {"allowed_units": 1},
    ),
    (
        "cart: 403 limit_reached, no units",
        "cart",
        err(403, "limit_reached"),
        Answer.LIMIT_REACHED,
        {},
    ),
    ("cart: 403 captcha_required", "cart", err(403, "captcha_required"), Answer.CAPTCHA_FAILED, {}),
    ("cart: 403 not_admitted", "cart", err(403, "not_admitted"), Answer.REJECTED, {}),
    (
        "cart: 503 queue_full",
        "cart",
        err(503, "overloaded", reason="queue_full"),
        Answer.OVERLOADED,
        {},
    ),
    (
        "cart: 503 queue_timeout",
        "cart",
        err(503, "overloaded", reason="queue_timeout"),
        Answer.QUEUE_TIMEOUT,
        {},
    ),
    ("cart: 499 abandoned", "cart", err(499, "abandoned"), Answer.ABANDONED, {}),
    ("cart: 422 unknown_sku", "cart", err(422, "unknown_sku"), None, {}),
    (
        "pay: 201 paid",
        "pay",
        jreply(201, {"order_id": 9, "reservation_id": 41, "units": 2}),
        Answer.OK,
        {"units_bought": 2, "order_id": 9},
    ),
    ("pay: 402 declined", "pay", err(402, "payment_failed"), Answer.PAYMENT_DECLINED, {}),
    ("pay: 504 timed out", "pay", err(504, "payment_timeout"), Answer.PAYMENT_TIMED_OUT, {}),
    ("pay: 410 hold_expired", "pay", err(410, "hold_expired"), Answer.HOLD_EXPIRED, {}),
    (
        "pay: 404 unknown_reservation",
        "pay",
        err(404, "unknown_reservation"),
        Answer.HOLD_EXPIRED,
        {},
    ),
    ("pay: 409 already_paid", "pay", err(409, "already_paid", order_id=9), Answer.OK, {}),
    ("pay: 409 request_in_progress", "pay", err(409, "request_in_progress"), Answer.RETRY, {}),
    ("pay: 429 rate_limited", "pay", err(429, "rate_limited"), Answer.RATE_LIMITED, {}),
    ("pay: 499 abandoned", "pay", err(499, "abandoned"), Answer.ABANDONED, {}),
    ("pay: 409 idempotency_key_reused", "pay", err(409, "idempotency_key_reused"), None, {}),
    (
        "lottery: entered",
        "lottery",
        jreply(201, {"account": 3, "draw_in_s": 20.0}),
        Answer.OK,
        {"draw_in_s": 20.0},
    ),
    (
        "lottery: already entered",
        "lottery",
        err(409, "already_entered", draw_in_s=4.0),
        Answer.OK,
        {"draw_in_s": 4.0},
    ),
    ("lottery: entries closed", "lottery", err(410, "entries_closed"), Answer.REJECTED, {}),
    ("lottery: too early", "lottery", err(425, "not_open"), Answer.NOT_OPEN, {}),
    (
        "lottery poll: won",
        "lottery_poll",
        jreply(
            200,
            {"account": 3, "entered": True, "drawn": True, "won": True, "claim_closes_in_s": 30.0},
        ),
        Answer.OK,
        {},
    ),
    (
        "lottery poll: lost",
        "lottery_poll",
        jreply(
            200,
            {"account": 3, "entered": True, "drawn": True, "won": False, "claim_closes_in_s": 30},
        ),
        Answer.REJECTED,
        {},
    ),
    (
        "lottery poll: not drawn",
        "lottery_poll",
        jreply(
            200, {"account": 3, "entered": True, "drawn": False, "won": False, "draw_in_s": 5.0}
        ),
        Answer.NOT_OPEN,
        {},
    ),
    (
        "waiting room: admitted",
        "waiting_room",
        jreply(
            201,
            {
                "ticket": "t-1",
                "admitted": True,
                "admission_token": "adm-1",
                "session_ends_in_s": 120.0,
                "retry_after_s": 1.0,
            },
        ),
        Answer.OK,
        {"ticket": "t-1", "admission_token": "adm-1"},
    ),
    (
        "waiting room: queued",
        "waiting_room",
        jreply(201, {"ticket": "t-1", "admitted": False, "waiting": 40, "retry_after_s": 2.5}),
        Answer.NOT_OPEN,
        {"ticket": "t-1", "retry_after_s": 2.5},
    ),
    ("waiting room: closed", "waiting_room", err(409, "sale_closed"), Answer.SOLD_OUT, {}),
    (
        "waiting room poll: admitted",
        "waiting_room_poll",
        jreply(200, {"ticket": "t-1", "admitted": True, "admission_token": "adm-1"}),
        Answer.OK,
        {"admission_token": "adm-1"},
    ),
    (
        "waiting room poll: still queued",
        "waiting_room_poll",
        jreply(200, {"ticket": "t-1", "admitted": False, "waiting": 12, "retry_after_s": 2.5}),
        Answer.NOT_OPEN,
        {"retry_after_s": 2.5},
    ),
    (
        "captcha: a challenge",
        "captcha",
        jreply(201, {"challenge_id": "c-1", "prompt": "3 + 4"}),
        Answer.OK,
        {"challenge_id": "c-1", "prompt": "3 + 4"},
    ),
    (
        "captcha answer: right",
        "captcha_answer",
        jreply(200, {"captcha_token": "k-1", "expires_in_s": 60.0}),
        Answer.OK,
        {"captcha_token": "k-1"},
    ),
    (
        "captcha answer: wrong",
        "captcha_answer",
        err(403, "wrong_answer"),
        Answer.CAPTCHA_FAILED,
        {},
    ),
    (
        "captcha answer: unknown challenge",
        "captcha_answer",
        err(404, "unknown_challenge"),
        Answer.CAPTCHA_FAILED,
        {},
    ),
    (
        "captcha answer: used challenge",
        "captcha_answer",
        err(409, "challenge_used"),
        Answer.CAPTCHA_FAILED,
        {},
    ),
]


@pytest.mark.parametrize(
    ("step", "reply", "meaning", "kept"),
    [c[1:] for c in DOCUMENTED],
    ids=[c[0] for c in DOCUMENTED],
)
def test_the_reference_protocol_reads_the_services_documented_answers(
    step: str, reply: Reply, meaning: Answer | None, kept: dict[str, Any]
) -> None:
    found = match(Target().rules(step), reply)
    if meaning is None:
        assert found is None, found
        return
    assert found is not None, f"no rule for {reply}"
    answer, used = found
    assert answer is meaning
    assert (capture(used, reply) if used is not None else {}) == kept


def test_the_reference_protocol_reads_no_answer_as_ambiguous_at_every_step() -> None:
    t = Target()
    for step in t.steps:
        assert match(t.rules(step), Reply(0)) == (Answer.AMBIGUOUS, None), step


# ---------------------------------------------------- checks before any traffic


def test_an_unset_secret_is_refused_naming_the_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("FLASHSALE_TEST_SHOP_KEY", raising=False)
    sc = scenario({"headers": {"X-Api-Key": "{env.FLASHSALE_TEST_SHOP_KEY}"}})
    with pytest.raises(TargetError) as e:
        check_protocol(sc, range(3), "shop.toml")
    assert str(e.value) == (
        "shop.toml: target: {env.FLASHSALE_TEST_SHOP_KEY}: environment variable "
        "FLASHSALE_TEST_SHOP_KEY not set or empty (a value the protocol reads from the "
        "environment: a secret, a path)"
    )
    monkeypatch.setenv("FLASHSALE_TEST_SHOP_KEY", "k")
    check_protocol(sc, range(3), "shop.toml")


def test_a_secret_a_hook_needs_is_checked_too(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("FLASHSALE_TEST_DB", raising=False)
    sc = scenario(
        none_target(audit={"command": ["{python}", "audit.py", "{env.FLASHSALE_TEST_DB}"]})
    )
    with pytest.raises(TargetError, match=r"\{env\.FLASHSALE_TEST_DB\}: environment variable"):
        check_protocol(sc, range(3), "s.toml")


def _accounts(tmp_path: Path, text: str, name: str = "accounts.csv") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def test_accounts_file_rows_by_id(tmp_path: Path) -> None:
    path = _accounts(tmp_path, "account,user,password\n0,alice,pw0\n 1 ,bob,\n")
    assert load_accounts(Target(accounts_file=str(path))) == {
        0: {"user": "alice", "password": "pw0"},
        1: {"user": "bob", "password": ""},
    }
    assert load_accounts(Target()) == {}


@pytest.mark.parametrize(
    ("text", "why"),
    [
        ("user,password\nalice,pw\n", "needs a header row with an 'account' column"),
        ("", "needs a header row with an 'account' column"),
        ("account,user\n0,alice\nbob,bob\n", "line 3: account 'bob' is not an id (0, 1 ...)"),
        ("account,user\n0,alice\n-1,x\n", "line 3: account '-1' is not an id (0, 1 ...)"),
        ("account,user\n0,a\n1,b\n2,c\n1,d\n", "line 5: account 1 appears twice"),
    ],
)
def test_a_bad_accounts_file_is_refused_naming_file_and_line(
    tmp_path: Path, text: str, why: str
) -> None:
    path = _accounts(tmp_path, text)
    with pytest.raises(TargetError) as e:
        load_accounts(Target(accounts_file=str(path)))
    assert str(e.value) == f"target.accounts_file: {path}: {why}"


def test_a_missing_accounts_file_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "nope.csv"
    with pytest.raises(TargetError) as e:
        load_accounts(Target(accounts_file=str(path)))
    assert str(e.value) == f"target.accounts_file: {path}: no such file"


def test_a_bad_id_after_a_blank_line_is_reported_on_its_own_line(tmp_path: Path) -> None:
    path = _accounts(tmp_path, "account,user\n0,alice\n\nbob,bob\n")  # bob is on line 4
    with pytest.raises(TargetError, match="line 4: account 'bob' is not an id"):
        load_accounts(Target(accounts_file=str(path)))


def test_an_accounts_file_saved_with_a_byte_order_mark_is_read(tmp_path: Path) -> None:
    path = _accounts(tmp_path, "\ufeffaccount,user\n0,alice\n")
    assert load_accounts(Target(accounts_file=str(path))) == {0: {"user": "alice"}}


def _user_target(accounts_file: Path | None, field: str = "user") -> dict[str, Any]:
    t: dict[str, Any] = {"steps": {"cart": {"headers": {"X-User": f"{{user.{field}}}"}}}}
    if accounts_file is not None:
        t["accounts_file"] = str(accounts_file)
    return t


def test_the_accounts_file_must_cover_every_account_replayed(tmp_path: Path) -> None:
    path = _accounts(tmp_path, "account,user\n0,a\n1,b\n2,c\n4,e\n")
    sc = scenario(_user_target(path))
    check_protocol(sc, range(3), "s.toml")
    with pytest.raises(TargetError) as e:
        check_protocol(sc, range(6), "s.toml")
    assert str(e.value) == (
        f"s.toml: target.accounts_file: {path}: no row for account 3 "
        "(2 of the accounts replayed have none)"
    )


def test_a_user_field_the_accounts_file_lacks_is_refused(tmp_path: Path) -> None:
    path = _accounts(tmp_path, "account,user\n0,a\n1,b\n")
    sc = scenario(_user_target(path, "password"))
    with pytest.raises(TargetError) as e:
        check_protocol(sc, range(2), "s.toml")
    assert str(e.value) == (
        f"s.toml: target.accounts_file: {path}: no column 'password' "
        "(the protocol uses {user.password})"
    )


def test_a_user_field_without_an_accounts_file_is_refused() -> None:
    sc = scenario(_user_target(None, "email"))
    with pytest.raises(TargetError) as e:
        check_protocol(sc, range(2), "s.toml")
    assert str(e.value) == (
        "s.toml: target.accounts_file: the protocol uses {user.email} but names no accounts file"
    )


def test_a_defense_on_needs_its_steps() -> None:
    d = data(none_target())
    check_protocol(parse_scenario(d), range(2), "s.toml")
    d["defenses"] = {"captcha": {"enabled": True}}
    with pytest.raises(TargetError) as e:
        check_protocol(parse_scenario(d), range(2), "s.toml")
    assert str(e.value) == (
        "s.toml: target.steps: the replay needs captcha, captcha_answer (the defenses it "
        "has on), which the protocol neither declares nor has a python_class method for"
    )
    # the reference protocol has them
    check_protocol(scenario(None, defenses={"captcha": {"enabled": True}}), range(2), "s.toml")


def test_set_turning_a_defense_on_is_checked_against_a_target_config(tmp_path: Path) -> None:
    cfg = tmp_path / "shop.toml"
    cfg.write_text(
        '[target]\nprotocol = "none"\n'
        '[target.steps.cart]\npath = "/c"\nanswers = [{ meaning = "ok" }]\n'
        '[target.steps.pay]\npath = "/p"\nanswers = [{ meaning = "ok" }]\n'
    )
    sc = apply_target_config(load_scenario(SMOKE, ["defenses.lottery.enabled=true"]), cfg)
    with pytest.raises(TargetError, match=r"the replay needs lottery, lottery_poll"):
        check_protocol(sc, range(2), str(cfg))


def test_a_relative_accounts_file_is_read_from_the_folder_of_the_file_naming_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    elsewhere = tmp_path / "cwd"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)  # the working folder plays no part
    scen_dir, cfg_dir = tmp_path / "scenarios", tmp_path / "targets"
    scen_dir.mkdir()
    cfg_dir.mkdir()
    _accounts(scen_dir, "account,user\n0,from-scenario\n1,s1\n")
    _accounts(cfg_dir, "account,user\n0,from-config\n1,c1\n")
    text = Path(SMOKE).read_text()
    (scen_dir / "s.toml").write_text(
        text + '\n[target]\naccounts_file = "accounts.csv"\n'
        '[target.steps.cart]\nheaders = { X-User = "{user.user}" }\n'
    )
    sc = load_scenario(scen_dir / "s.toml")
    assert sc.target.accounts_file == str((scen_dir / "accounts.csv").resolve())
    assert load_accounts(sc.target)[0] == {"user": "from-scenario"}
    check_protocol(sc, range(2), "s.toml")
    (cfg_dir / "t.toml").write_text(
        '[target]\naccounts_file = "accounts.csv"\n'
        '[target.steps.cart]\nheaders = { X-User = "{user.user}" }\n'
    )
    sc2 = apply_target_config(sc, cfg_dir / "t.toml")
    assert sc2.target.accounts_file == str((cfg_dir / "accounts.csv").resolve())
    assert load_accounts(sc2.target)[0] == {"user": "from-config"}


# ------------------------------------------------------------ the escape hatch

CUSTOM = "tests._custom_protocol"


@pytest.mark.parametrize(
    ("name", "why"),
    [
        (
            "tests._no_such_protocol:Shop",
            "cannot import tests._no_such_protocol: ModuleNotFoundError",
        ),
        (
            f"{CUSTOM}:NotSteps",
            f"{CUSTOM}:NotSteps is not a class derived from flashsale.replay.custom.Steps",
        ),
        (
            f"{CUSTOM}:NoSuchClass",
            f"{CUSTOM}:NoSuchClass is not a class derived from flashsale.replay.custom.Steps",
        ),
        (f"{CUSTOM}:TypoSteps", f"{CUSTOM}:TypoSteps: method crat is not a step"),
    ],
)
def test_load_steps_says_what_is_wrong(name: str, why: str) -> None:
    with pytest.raises(ValueError) as e:
        load_steps(name)
    assert str(e.value).startswith(why), str(e.value)
    sc = scenario({"python_class": name})
    with pytest.raises(TargetError) as te:
        check_protocol(sc, range(2), "s.toml")
    assert str(te.value).startswith(f"s.toml: target.python_class: {why}"), str(te.value)


def test_load_steps_takes_a_steps_class_with_helpers() -> None:
    cls = load_steps(f"{CUSTOM}:ReferenceCart")
    assert cls is _custom_protocol.ReferenceCart
    assert handles(cls, "cart") and not handles(cls, "pay") and not handles(None, "cart")
    assert load_custom(Target()) is None


def test_meaning_of_a_step_methods_answer() -> None:
    assert meaning_of(Answer.SOLD_OUT) == (Answer.SOLD_OUT, {})
    assert meaning_of("rate_limited") == (Answer.RATE_LIMITED, {})
    assert meaning_of(Answered("ok", {"cart_id": 3})) == (Answer.OK, {"cart_id": 3})
    assert meaning_of("great") == "the method returned 'great', not a meaning (ok, sold_out, ...)"
    assert meaning_of(None) == "the method returned None, not a meaning (ok, sold_out, ...)"
    assert meaning_of(Answered("ok", [1])) == "the method's captures are not a dict"  # type: ignore[arg-type]


def play_journeys(
    db: str, sc: Scenario, buyers: list[tuple[int, float]], opens_in_s: float = 5.0
) -> tuple[list[JourneyLog], list[Sent], dict[str, Any]]:
    """tests/_inprocess.play with the protocol's Python class (target.python_class)
    given to each journey, returning the journeys' logs."""
    clock = Clock()
    sent: list[Sent] = []
    custom = load_custom(sc.target)
    with service(db, sc, clock, opens_in_s=opens_in_s) as c:
        conductor = Conductor(c, clock, T0 + opens_in_s, len(buyers))
        journeys = [
            Journey(
                sc,
                Buyer(journey=j, kind=int(kind), account=j, person=j, channel=0, arrived=at),
                StepClient(conductor, j, sent),
                np.random.default_rng(j),
                "replay",
                custom=custom,
            )
            for j, (kind, at) in enumerate(buyers)
        ]
        conductor.run(journeys)
        books = audit(c)
    return [j.log for j in journeys], sent, books


def steps_of(sent: list[Sent], j: int) -> list[str]:
    return [s.step for s in sent if s.journey == j]


def test_a_python_cart_buys_against_the_reference_service(tmp_path: Path) -> None:
    sc = scenario(
        {"python_class": f"{CUSTOM}:ReferenceCart"}, bots={"units_per_order": 2}
    )  # the rest of the reference protocol stays
    logs, sent, books = play_journeys(str(tmp_path / "sale.db"), sc, [(BOT, 1.0), (HUMAN, 2.0)])
    assert [log.result for log in logs] == ["purchased", "purchased"]
    assert [log.protocol_errors for log in logs] == [[], []]
    assert steps_of(sent, 0) == ["cart", "pay"]
    assert steps_of(sent, 1) == ["view", "cart", "pay"]
    carts = [s for s in sent if s.step == "cart"]
    assert [c.body for c in carts] == [
        {"account": 0, "sku": "SKU-P", "units": 2, "channel": "web"},
        {"account": 1, "sku": "SKU-P", "units": 1, "channel": "web"},
    ]
    # the class's requests carry the protocol's headers (one fake address per person)
    assert [c.headers.get("X-Forwarded-For") for c in carts] == ["11.0.0.0", "10.0.0.1"]
    # the pay (the reference table) sends the reservation the Python cart captured
    for j in (0, 1):
        cart, pay = [s for s in sent if s.journey == j and s.step in ("cart", "pay")]
        assert pay.body is not None and cart.reply.body is not None
        assert pay.body["reservation_id"] == cart.reply.body["reservation_id"]
    assert [log.units for log in logs] == [2, 1]
    assert (books["units_sold"], books["orders"], books["units_reserved"]) == (3, 2, 0)


@pytest.mark.parametrize(
    ("cls", "why"),
    [
        ("BadMeaningCart", "the method returned 'great', not a meaning (ok, sold_out, ...)"),
        ("RaisingCart", "RaisingCart.cart raised RuntimeError: no basket in a 201"),
    ],
)
def test_a_python_step_that_fails_is_a_protocol_error_never_a_success(
    tmp_path: Path, cls: str, why: str
) -> None:
    sc = scenario({"python_class": f"{CUSTOM}:{cls}"})
    logs, sent, books = play_journeys(str(tmp_path / "sale.db"), sc, [(BOT, 1.0)])
    (log,) = logs
    assert log.result == "error"
    assert log.protocol_errors == [("cart", why)]
    assert math.isnan(log.carted) and log.units == 0
    assert "cart:ok" not in log.seen
    assert steps_of(sent, 0) == ["cart"]  # never paid
    # the service did hold a unit: the journey's error is the protocol's, not the shop's
    assert (books["units_sold"], books["units_reserved"]) == (0, 1)


def test_a_python_carts_captures_feed_a_table_pay(tmp_path: Path) -> None:
    sc = scenario(
        {
            "protocol": "none",
            "python_class": f"{CUSTOM}:ReferenceCart",
            "steps": {
                "pay": {
                    "method": "POST",
                    "path": "/v1/checkout",
                    "headers": {"Idempotency-Key": "{idempotency_key}"},
                    "json": {"reservation_id": "{reservation_id}", "account": "{account}"},
                    "answers": [{"status": 201, "meaning": "ok"}],
                }
            },
        }
    )
    logs, _, books = play_journeys(str(tmp_path / "sale.db"), sc, [(BOT, 1.0)])
    assert [log.result for log in logs] == ["purchased"]
    assert books["units_sold"] == 1


@contextlib.contextmanager
def cookie_shop(db: Path, units: int) -> Iterator[str]:
    """The stand-in cookie shop (examples/shops/cookie_shop.py) as a process on a free
    loopback port, its sale open; yields its base URL."""
    cmd = [sys.executable, "-m", "examples.shops.cookie_shop", "--port", "0", "--db", str(db)]
    cmd += ["--units", str(units), "--opens-in-s", "0"]
    proc = subprocess.Popen(
        cmd,
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        preexec_fn=die_with_parent,
    )
    assert proc.stdout is not None
    try:
        ready, _, _ = select.select([proc.stdout], [], [], 60.0)  # a bound, not an assertion
        line = proc.stdout.readline().decode().strip() if ready else ""
        assert line.startswith("serving http://127.0.0.1:"), line
        yield line.removeprefix("serving ")
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        proc.stdout.close()


def test_a_python_steps_second_request_reads_the_cookie_its_first_one_set(
    tmp_path: Path,
) -> None:
    sc = scenario(
        {
            "protocol": "none",
            "python_class": f"{CUSTOM}:CookieShopCart",
            "headers": {"X-CSRFToken": "{cookie.csrftoken?}"},
            "steps": {"pay": {"method": "POST", "path": "/shop/checkout/", "answers": [PAY_OK]}},
        },
        sale={"units": 5},
    )
    with cookie_shop(tmp_path / "cookie.db", units=5) as url:
        client = HttpClient(url, time.time(), 10.0, time.time() + 60.0, max_requests=10)
        who = Buyer(journey=0, kind=int(BOT), account=4, person=0, channel=0, arrived=0.0)
        j = Journey(sc, who, client, np.random.default_rng(0), "k", custom=load_custom(sc.target))
        answer, reply = j.exchange("cart")
    page, add = client.exchanges
    assert (page.request.path, add.request.path) == ("/shop/products/1/", "/shop/basket/add/1/")
    assert "X-CSRFToken" not in page.request.headers  # no cookie yet: the optional is left out
    assert add.request.headers.get("X-CSRFToken") == page.reply.cookies["csrftoken"]
    assert (answer, reply.status) == (Answer.OK, 200)


# ------------------------------------------- protocol errors met by a journey


def test_a_cart_path_that_404s_ends_every_journey_with_a_protocol_error(tmp_path: Path) -> None:
    sc = scenario({"steps": {"cart": {"path": "/v1/carts"}}})
    logs, sent, books = play_journeys(str(tmp_path / "sale.db"), sc, [(HUMAN, 1.0), (BOT, 1.0)])
    assert [log.result for log in logs] == ["error", "error"]
    for log in logs:
        ((step, what),) = log.protocol_errors
        assert step == "cart"
        assert what.startswith("no rule matches 404 "), what
        assert "not_found" in what, what
    assert logs[0].seen == {"view:ok": 1}
    assert logs[1].seen == {}
    assert [s.path for s in sent if s.step == "cart"] == ["/v1/carts", "/v1/carts"]
    assert (books["units_sold"], books["units_reserved"], books["stock_left"]) == (0, 0, 10)
    # the watchdog fails such a replay, naming the step and its answer
    why = problem(Tally.of(logs), sc.target, since_open_s=3.0, final=True)
    assert why is not None
    assert why.startswith("2 of 3 requests got an answer the target protocol does not know")
    assert "cart: 2 protocol error(s), e.g. no rule matches 404" in why
    assert "answers seen: view:ok x1" in why


def test_a_cart_answer_without_the_captured_field_is_a_protocol_error(tmp_path: Path) -> None:
    sc = scenario(
        {
            "steps": {
                "cart": {
                    "answers": [
                        {"status": 201, "meaning": "ok", "capture": {"basket_id": "json:basket_id"}}
                    ]
                },
                "pay": {"json": {"reservation_id": "{basket_id}", "account": "{account}"}},
            }
        }
    )
    logs, sent, books = play_journeys(str(tmp_path / "sale.db"), sc, [(BOT, 1.0)])
    (log,) = logs
    ((step, what),) = log.protocol_errors
    assert step == "cart"
    assert what.startswith("the answer matched status 201 -> ok but lacks json:basket_id: 201 ")
    assert "reservation_id" in what  # the answer, quoted
    assert log.result == "error"  # neither purchased nor a yellow cart
    assert math.isnan(log.carted)
    assert steps_of(sent, 0) == ["cart"]
    assert (books["units_sold"], books["units_reserved"]) == (0, 1)


def test_a_pay_that_cannot_be_built_after_a_cart_is_a_yellow_cart(tmp_path: Path) -> None:
    """The cart took a hold (a yellow cart), then the pay needs a value the cart's answer
    did not give: a protocol error of the pay, and the journey is ``cart_failed``."""
    sc = scenario(
        {
            "steps": {
                "cart": {
                    "answers": [
                        {"status": 201, "meaning": "ok", "capture": {"basket": "json:basket?"}}
                    ]
                },
                "pay": {"json": {"reservation_id": "{basket}", "account": "{account}"}},
            }
        }
    )
    logs, sent, books = play_journeys(str(tmp_path / "sale.db"), sc, [(BOT, 1.0)])
    (log,) = logs
    assert log.protocol_errors == [
        ("pay", "{basket} has no value here (not captured yet, or not set)")
    ]
    assert log.result == "cart_failed"
    assert steps_of(sent, 0) == ["cart"]  # the pay was never sent
    assert log.requests == 1
    assert (books["units_sold"], books["units_reserved"]) == (0, 1)


def test_a_request_is_built_from_the_protocol_with_the_journeys_cookies() -> None:
    sc = scenario(
        none_target(
            headers={"X-Shop": "flash", "X-Csrf": "{cookie.csrftoken}", "X-Gift": "{gift?}"},
            forwarded_for=True,
            steps={
                "cart": {
                    "method": "POST",
                    "path": "/basket/{sku}/{account}",
                    "json": {"qty": "{units}", "gift": "{gift?}"},
                    "answers": [{"status": 201, "meaning": "ok", "capture": {"gift": "json:g?"}}],
                },
                "pay": {
                    "method": "PUT",
                    "path": "/pay",
                    "form": {"qty": "{units}", "who": "{kind}"},
                    "answers": [{"meaning": "ok"}],
                },
            },
        ),
        sale={"sku": "A/B 1"},
    )
    who = Buyer(journey=3, kind=int(BOT), account=6, person=258, channel=0, arrived=0.0)
    # request() builds; it never sends, so the journey needs no transport here
    j = Journey(sc, who, None, np.random.default_rng(0), "k")  # type: ignore[arg-type]
    j.cookies.update({"csrftoken": "c1", "sessionid": "s1"})
    req = j.request("cart")
    assert (req.method, req.path) == ("POST", "/basket/A%2FB%201/6")
    assert req.json == {"qty": 1} and req.form is None
    assert req.headers == {
        "X-Shop": "flash",
        "X-Csrf": "c1",  # an unset optional header is not sent
        "X-Forwarded-For": "11.0.1.2",
        "Cookie": "csrftoken=c1; sessionid=s1",
    }
    pay = j.request("pay")
    assert (pay.method, pay.path, pay.json, pay.form) == (
        "PUT",
        "/pay",
        None,
        {"qty": "1", "who": "bot"},
    )


# ------------------------------------------------------------------- watchdog


def jlog(
    requests: int,
    seen: dict[str, int] | None = None,
    errors: tuple[tuple[str, str], ...] = (),
    carted: float = math.nan,
) -> JourneyLog:
    return JourneyLog(
        requests=requests, seen=dict(seen or {}), protocol_errors=list(errors), carted=carted
    )


def test_tally_of_journey_logs() -> None:
    logs = [
        jlog(3, {"view:ok": 1, "cart:not_open": 2}),
        jlog(2, {"view:ok": 1}, (("cart", "no rule matches 404 'a'"),)),
        jlog(1, {}, (("cart", "no rule matches 404 'a'"),)),  # the same example once
        jlog(1, {}, (("cart", "no rule matches 404 'b'"),)),
        jlog(1, {}, (("cart", "no rule matches 404 'c'"),)),
        jlog(1, {}, (("cart", "no rule matches 404 'd'"),)),  # beyond 3 examples
        jlog(2, {"view:ok": 1}, (("pay", "{basket} has no value here"),)),
    ]
    t = Tally.of(logs)
    assert t.requests == 11
    assert t.seen == {"view:ok": 3, "cart:not_open": 2}
    assert t.protocol_errors == {"cart": 5, "pay": 1}
    assert t.errors() == 6
    assert t.examples == {
        "cart": ["no rule matches 404 'a'", "no rule matches 404 'b'", "no rule matches 404 'c'"],
        "pay": ["{basket} has no value here"],
    }
    assert t.progressed is False
    assert t.describe() == (
        "cart: 5 protocol error(s), e.g. no rule matches 404 'a'; "
        "pay: 1 protocol error(s), e.g. {basket} has no value here; "
        "answers seen: view:ok x3, cart:not_open x2"
    )
    assert Tally.of([jlog(1, carted=2.5)]).progressed is True
    assert Tally.of([jlog(1, {"cart:sold_out": 1})]).progressed is True
    assert Tally.of([jlog(1, {"view:sold_out": 1})]).progressed is True
    assert Tally.of([jlog(1, {"cart:rate_limited": 9})]).progressed is False
    assert Tally().describe() == "no answer at all"


def test_tallies_merge_as_if_one_process_had_every_journey() -> None:
    a = [jlog(4, {"cart:ok": 1}, (("cart", "x1"),), carted=1.0), jlog(2, {}, (("cart", "x2"),))]
    b = [jlog(5, {"cart:ok": 2, "pay:ok": 1}, (("cart", "x2"), ("pay", "p1"))), jlog(1)]
    b += [jlog(1, {}, (("cart", "x3"),)), jlog(1, {}, (("cart", "x4"),))]
    merged = Tally.of(a)
    merged.merge(json.loads(json.dumps(Tally.of(b).to_json())))  # plain JSON between processes
    assert merged.requests == 14
    assert merged.seen == {"cart:ok": 3, "pay:ok": 1}
    assert merged.protocol_errors == {"cart": 5, "pay": 1}
    assert merged.examples == {"cart": ["x1", "x2", "x3"], "pay": ["p1"]}
    assert merged.progressed is True
    assert merged.to_json() == Tally.of(a + b).to_json()
    stopped = Tally()
    stopped.merge({"stopped": "process 2 stopped: too many protocol errors"})
    assert problem(stopped, Target(), 0.0, final=False) == (
        "process 2 stopped: too many protocol errors"
    )


def _errors(n: int) -> tuple[tuple[str, str], ...]:
    return tuple(("cart", f"no rule matches 404 'x{k}'") for k in range(n))


@pytest.mark.parametrize(
    ("requests", "errors", "final", "fails"),
    [
        (200, 2, True, False),  # 1 %: not above the share
        (200, 3, True, True),  # 1.5 %
        (MIN_REQUESTS, 2, False, True),  # judged during the run from MIN_REQUESTS on
        (MIN_REQUESTS - 1, 50, False, False),  # too few requests to judge during the run
        (MIN_REQUESTS - 1, 50, True, True),  # ... but judged at the end
        (10, 1, True, True),
        (1000, 10, False, False),
    ],
)
def test_the_protocol_error_share(requests: int, errors: int, final: bool, fails: bool) -> None:
    logs = [jlog(requests, {"cart:ok": 1}, _errors(errors), carted=1.0)]
    why = problem(Tally.of(logs), Target(), since_open_s=5.0, final=final)
    if not fails:
        assert why is None, why
        return
    assert why is not None
    assert why.startswith(
        f"{errors:,} of {requests:,} requests got an answer the target protocol does not know "
        "(more than target.max_protocol_error_share = 0.01): "
        f"cart: {errors:,} protocol error(s), e.g. no rule matches 404 'x0'"
    ), why
    assert why.endswith("answers seen: cart:ok x1"), why


def test_the_share_is_the_targets() -> None:
    logs = [jlog(200, {"cart:ok": 1}, _errors(40), carted=1.0)]  # 20 %
    assert problem(Tally.of(logs), Target(max_protocol_error_share=0.25), 5.0, True) is None
    why = problem(Tally.of(logs), Target(max_protocol_error_share=0.1), 5.0, True)
    assert why is not None and "(more than target.max_protocol_error_share = 0.1)" in why


def test_the_verdict_on_a_whole_replay() -> None:
    """The replay's end (flashsale.replay.watchdog.verdict): the manifest's tally, judged
    with every second elapsed. Journeys whose every request failed to build sent
    nothing, so no share can be judged: they never progressed, and that fails."""
    never_sent = [jlog(0, {}, (("cart", "{cookie.csrftoken} has no value here"),))] * 5
    why = verdict(Tally.of(never_sent).to_json(), Target())
    assert why == (
        "no journey reached a successful cart or a sold-out answer during the whole replay: "
        "cart: 5 protocol error(s), e.g. {cookie.csrftoken} has no value here"
    )
    fine = [jlog(3, {"view:ok": 1, "cart:ok": 1, "pay:ok": 1}, carted=2.0)]
    assert verdict(Tally.of(fine).to_json(), Target()) is None
    assert verdict(None, Target()) is None  # a run recorded before tallies


def test_a_replay_that_never_progresses_stalls_after_the_timeout() -> None:
    logs = [jlog(4, {"view:not_open": 3, "cart:rate_limited": 1}) for _ in range(5)]
    t = Target(progress_timeout_s=30)
    assert problem(Tally.of(logs), t, since_open_s=29.9, final=False) is None
    why = problem(Tally.of(logs), t, since_open_s=30.0, final=False)
    assert why == (
        "no journey reached a successful cart or a sold-out answer in the 30 s after the "
        "opening (target.progress_timeout_s): answers seen: view:not_open x15, "
        "cart:rate_limited x5"
    )
    assert problem(Tally.of(logs), t, since_open_s=31.0, final=True) == why


def test_a_stall_names_the_step_with_protocol_errors() -> None:
    # a few unmapped answers, under the share, while nothing progresses
    logs = [jlog(1000, {"cart:not_open": 999}, (("cart", "no rule matches 200 'queued'"),))]
    why = problem(Tally.of(logs), Target(), since_open_s=60.0, final=False)
    assert why == (
        "no journey reached a successful cart or a sold-out answer in the 60 s after the "
        "opening (target.progress_timeout_s): cart: 1 protocol error(s), e.g. no rule "
        "matches 200 'queued'; answers seen: cart:not_open x999"
    )


@pytest.mark.parametrize(
    "progress",
    [
        jlog(2, {"cart:sold_out": 1}),
        jlog(1, {"view:sold_out": 1}),
        jlog(2, {"cart:ok": 1}, carted=3.0),
    ],
)
def test_a_cart_or_a_sold_out_answer_is_progress(progress: JourneyLog) -> None:
    logs = [jlog(4, {"view:not_open": 4}) for _ in range(3)] + [progress]
    assert problem(Tally.of(logs), Target(progress_timeout_s=5), 600.0, final=True) is None


@pytest.mark.parametrize("value", ["", "abc\r\nX-Evil: 1"])
def test_an_empty_or_broken_secret_is_refused_without_showing_it(
    monkeypatch: pytest.MonkeyPatch, value: str
) -> None:
    """Set but empty would send ``Bearer `` silently; a line break would split the header
    (and the old replay printed the secret in its error). Both: exit 2, value unshown."""
    monkeypatch.setenv("FLASHSALE_TEST_SHOP_KEY", value)
    sc = scenario({"headers": {"Authorization": "Bearer {env.FLASHSALE_TEST_SHOP_KEY}"}})
    with pytest.raises(TargetError) as e:
        check_protocol(sc, range(3), "shop.toml")
    assert "FLASHSALE_TEST_SHOP_KEY" in str(e.value)
    assert "abc" not in str(e.value)


@pytest.mark.parametrize(
    ("url", "why"),
    [
        ("http://127.0.0.1:99999", "Port out of range"),
        ("http://127.0.0.1:8000/a b", "no spaces"),
        ("http://127.0.0.1:8000/x?x=1", "no query or fragment"),
        ("http://127.0.0.1:8000/#top", "no query or fragment"),
        ("http://[::1", "expected an http(s) URL"),
        ("ftp://127.0.0.1", "expected an http(s) URL"),
    ],
)
def test_a_malformed_target_url_is_one_error_line_and_exit_2(url: str, why: str) -> None:
    """On the command line and in the [target] table alike, before anything is sent."""
    res = CliRunner().invoke(
        app, ["replay", str(SCENARIOS / "smoke.toml"), "--target", url, "--scale", "0.2"]
    )
    assert res.exit_code == 2, res.output
    lines = res.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and why in lines[0], lines
    res = CliRunner().invoke(
        app, ["validate", str(SCENARIOS / "smoke.toml"), "--set", f"target.base_url={url!r}"]
    )
    assert res.exit_code == 2 and "target.base_url" in res.stderr, res.output


def test_a_probe_of_a_target_nobody_answers_on_fails(tmp_path: Path) -> None:
    """No answer at all is nothing to debug in a mapping: an error line and exit 1, not
    'protocol errors: 0' and exit 0."""
    from ._shopserver import closed_port

    url = f"http://127.0.0.1:{closed_port()}"
    flashsale = str(Path(sys.executable).parent / "flashsale")
    proc = subprocess.run(
        [flashsale, "probe", str(SCENARIOS / "smoke.toml"), "--target", url, "--timeout", "20"],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,
    )
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert f"error: {url}: no answer to" in proc.stderr, proc.stderr
    assert "Traceback" not in proc.stderr


def test_a_replay_whose_audit_is_missing_has_unknown_books() -> None:
    """A replay's manifest without an audit (it failed, or the run stopped first) is
    read as a replay without one: oversold units unknown, never the client's 0."""
    from flashsale.postrun import _audits
    from flashsale.runs import RunFolder

    assert _audits(RunFolder(Path("r"), {"engine": "replay"}), [0]) == [{"source": None}]
    assert _audits(RunFolder(Path("s"), {"engine": "simulate"}), [0]) is None


@pytest.mark.parametrize(
    ("want", "message"),
    [
        ("{gtt=0}", "unknown comparison 'gtt' (allowed: gt, ge, lt, le, ne, in, exists)"),
        ('{gt="x"}', "gt: Input should be a valid number"),
        ("[1]", "a value to equal (text, number, true/false) or a comparison like {gt = 0}"),
    ],
)
def test_a_bad_json_condition_is_one_error_line(want: str, message: str) -> None:
    rule = f'target.steps.view.answers=[{{status=200, json={{stock_left={want}}}, meaning="ok"}}]'
    res = CliRunner().invoke(app, ["validate", str(SCENARIOS / "smoke.toml"), "--set", rule])
    assert res.exit_code == 2
    assert res.stderr.splitlines() == [
        f"error: {SCENARIOS / 'smoke.toml'}: target.steps.view.answers[0].json.stock_left: "
        + message
    ]
