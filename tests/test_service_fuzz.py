"""Fuzz: every endpoint of the service's OpenAPI document, never a 5xx (issue 13).

The operations come from the service's own ``/openapi.json``, so a new endpoint is
fuzzed without a new test. For each request hypothesis draws path parameters (ids
in and out of range, odd unicode digits such as superscript two and Arabic-Indic one, any text), the
declared query parameters and headers (present, absent, junk), and a body: one
built from the operation's JSON schema, the same with one field given a wrong type,
a huge number or deep nesting, or something that is not a JSON object at all
(arrays, scalars, raw bytes, invalid UTF-8, ``[`` x 8,000). Admin operations get
the admin token and, for ``/admin/reset`` and ``/admin/defenses``, scenario data
with odd names and switched defenses. Requests run in process (Starlette's
TestClient) against one service per backend, so the sale's state (holds, orders,
defenses, re-sales) builds up across examples as it would in a real sale.

Every answer must be below 500 and, when it is an error, JSON ``{error, detail,
field}``. A crash inside the app is re-raised by the TestClient with its traceback.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any
from urllib.parse import quote

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from starlette.testclient import TestClient

from flashsale.scenario import MAX_SKU_CHARS, Scenario, parse_scenario
from flashsale.service.bodies import MAX_JSON_DEPTH
from flashsale.service.openapi import OPERATIONS

from .test_service import ADMIN, client

SKU = "FUZZ-1"


def fuzz_scenario() -> Scenario:
    return parse_scenario(
        {
            "schema_version": 1,
            "name": "fuzz",
            "seed": 5,
            "sale": {
                "sku": SKU,
                "units": 50,
                "channels": [
                    {"name": "web", "stock_share": 0.5, "demand_share": 0.5},
                    {"name": "app", "stock_share": 0.5, "demand_share": 0.5},
                ],
            },
            "humans": {"count": 50},
            "service": {"workers": 4, "queue_limit": 50, "cart_hold_s": 60},
            "defenses": {"review": {"enabled": True}},
        }
    )


# ------------------------------------------------------------------ values

_ODD_DIGITS = [
    "²",
    "\u0661",
    "\uff11",
    "\U0001d7d9",
    "\u0663\u0664",
    "⁰",
    "1²",
    "0x1",
    "1e3",
    "1_000",
    "-0",
    "+1",
    "½",
]
_ODD_TEXT = st.text(
    st.characters(codec="utf-8", exclude_categories=("Cs",)),  # any scalar value
    max_size=20,
)


def _deep(levels: int) -> Any:
    out: Any = 1
    for _ in range(levels):
        out = [out]
    return out


_HUGE_INTS = st.sampled_from([2**63, -(2**63) - 1, 10**30, 2**64 + 1, -1, 0])
_JUNK: st.SearchStrategy[Any] = st.one_of(
    st.none(),
    st.booleans(),
    _HUGE_INTS,
    st.integers(),
    st.floats(),  # inf and nan too: sent as JSON's Infinity and NaN
    _ODD_TEXT,
    st.sampled_from(["", " ", "1", "0", "x" * 300, "\x00", "null", "\u202e1"]),
    st.lists(st.integers(-3, 3), max_size=3),
    st.dictionaries(st.text(max_size=3), st.integers(), max_size=2),
    st.sampled_from([_deep(MAX_JSON_DEPTH - 2), _deep(MAX_JSON_DEPTH + 1)]),
)


Seen = dict[str, list[Any]]
"""What the service handed out so far, by field name: reservation ids, order ids,
challenge ids and their answers, tickets, tokens. Bodies and paths reuse them, so
payments, order reads, cancellations, CAPTCHA answers and admissions happen."""

_LIVE: dict[str, st.SearchStrategy[Any]] = {
    "sku": st.just(SKU),
    "channel": st.sampled_from(["web", "app"]),
    "account": st.integers(0, 3),  # few accounts: a reused id often is the caller's
    "units": st.integers(1, 3),
}
_HARVESTED = ("reservation_id", "order_id", "challenge_id", "ticket", "answer")
_HARVESTED += ("captcha_token", "admission_token")


def harvest(seen: Seen, answer: Any) -> None:
    """Keep the ids and tokens in an answer (and a challenge's answer, from its prompt)."""
    if not isinstance(answer, dict):
        return
    for key in _HARVESTED:
        if isinstance(answer.get(key), int | str):
            seen.setdefault(key, []).append(answer[key])
    if isinstance(answer.get("prompt"), str):
        a, b = answer["prompt"].split("+")
        seen.setdefault("answer", []).append(str(int(a) + int(b)))


def _live(name: str, seen: Seen) -> st.SearchStrategy[Any] | None:
    """The live sale's values for a field: its SKU, channels, few accounts, and what
    the service handed out lately. The draws do not depend on ``seen`` (hypothesis
    replays them), only the values they are mapped to."""
    options = [_LIVE[name]] if name in _LIVE else []
    if name in _HARVESTED:

        def recent(k: int) -> Any:
            values = seen.get(name) or [1]  # nothing handed out yet: an id, not yet valid
            return values[-1 - k % len(values)]

        options.append(st.integers(0, 7).map(recent))
    return st.one_of(options) if options else None


def _from_schema(schema: dict[str, Any], name: str = "", seen: Seen | None = None) -> Any:
    """Values a JSON schema (the subset pydantic writes for the body models) admits,
    mostly the live sale's own (:func:`_live`)."""
    live = _live(name, seen or {})
    if live is not None:
        return st.one_of(live, live, live, _from_schema(schema))
    if "anyOf" in schema:
        return st.one_of([_from_schema(s) for s in schema["anyOf"]])
    kind = schema.get("type")
    if kind == "null":
        return st.none()
    if kind == "integer":
        lo, hi = schema.get("minimum", -(2**63)), schema.get("maximum", 2**63 - 1)
        return st.one_of(st.integers(lo, min(hi, lo + 12)), st.integers(lo, hi))
    if kind == "number":
        exclusive = "exclusiveMinimum" in schema
        lo = schema.get("minimum", schema.get("exclusiveMinimum", -1e9))
        hi = schema.get("maximum", 1e9)
        return st.one_of(
            st.floats(lo, min(hi, lo + 5), exclude_min=exclusive),
            st.floats(lo, hi, exclude_min=exclusive),
        )
    if kind == "string":
        lo, hi = schema.get("minLength", 0), min(schema.get("maxLength", 50), 70)
        return st.text(min_size=lo, max_size=hi)
    if kind == "array":
        return st.lists(_from_schema(schema["items"]), max_size=5)
    if kind == "object":
        props: dict[str, Any] = schema.get("properties", {})
        required = set(schema.get("required", []))
        return st.fixed_dictionaries(
            {k: _from_schema(v, k, seen) for k, v in props.items() if k in required},
            optional={k: _from_schema(v, k, seen) for k, v in props.items() if k not in required},
        )
    raise AssertionError(f"schema kind {kind!r} has no strategy: extend _from_schema")


def _encode(value: Any) -> bytes:
    return json.dumps(value, allow_nan=True).encode()


_RAW_BODIES = st.one_of(
    st.binary(max_size=64),
    st.sampled_from(
        [
            b"",
            b"{",
            b"[" * 8000,
            b'{"a":' * 2000,
            b"\xff\xfe{}",
            b'{"account": 1e999}',
            b'{"account": ' + b"9" * 5000 + b"}",
            b'{"account": NaN, "units": -Infinity}',
            b'{"account": 1, "account": "x"}',
            b'"\\ud800"',
        ]
    ),
    _JUNK.map(_encode),
)


def _one_junk(valid: st.SearchStrategy[dict[str, Any]]) -> st.SearchStrategy[Any]:
    """Dicts from ``valid``, sometimes with one field (or an unknown one) made junk."""

    @st.composite
    def spoil(draw: st.DrawFn) -> dict[str, Any]:
        out = draw(valid)
        field = draw(st.sampled_from([*out, "extra"]))
        return {**out, field: draw(_JUNK)}

    return st.one_of(valid, valid, valid, spoil())


def _scenario_data() -> st.SearchStrategy[Any]:
    """``/admin/reset`` bodies: the fuzz sale with odd names, sizes and defenses."""
    base = fuzz_scenario().to_toml_dict()
    odd = st.one_of(
        st.sampled_from(["é" * MAX_SKU_CHARS, "x" * (MAX_SKU_CHARS + 1), "a\x00b"]),
        st.text(min_size=1, max_size=MAX_SKU_CHARS),
    )
    # mostly the live names, or no cart would find the product after a reset
    sku, channel = (st.one_of(st.just(live), st.just(live), odd) for live in (SKU, "web"))
    sale = _one_junk(
        st.fixed_dictionaries({"sku": sku, "channel": channel, "units": st.integers(1, 100)})
    )

    def build(sale: dict[str, Any], defenses: dict[str, Any]) -> Any:
        data = json.loads(json.dumps(base))
        data["sale"]["sku"] = sale.get("sku", SKU)
        data["sale"]["units"] = sale.get("units", 10)
        data["sale"]["channels"][0]["name"] = sale.get("channel", "web")
        data["defenses"].update(defenses)
        return data

    return st.builds(build, sale, _defenses())


def _defenses() -> st.SearchStrategy[dict[str, Any]]:
    """Partial ``[defenses]`` tables: defenses switched on or (more often, so that carts
    still go through) off, sometimes one junk entry."""
    on_off = st.fixed_dictionaries({"enabled": st.sampled_from([False, False, False, True])})
    names = ["rate_limit", "account_limit", "captcha", "waiting_room", "lottery", "review"]
    return _one_junk(st.dictionaries(st.sampled_from(names), on_off, max_size=3))


@st.composite
def _body(draw: st.DrawFn, path: str, op: dict[str, Any], seen: Seen) -> bytes | None:
    content = op.get("requestBody", {}).get("content", {}).get("application/json")
    if content is not None:
        objects = _one_junk(_from_schema(content["schema"], seen=seen))
    elif path == "/admin/reset":
        objects = _scenario_data()
    elif path == "/admin/defenses":
        objects = _defenses()
    else:
        objects = st.nothing()
    if not objects.is_empty:  # two thirds objects (one in four spoiled), a third junk
        return draw(st.one_of(objects.map(_encode), objects.map(_encode), _RAW_BODIES))
    return draw(st.one_of(st.none(), st.none(), _RAW_BODIES))


def _param(draw: st.DrawFn, param: dict[str, Any], seen: Seen) -> str | None:
    name, schema = param["name"], param.get("schema", {})
    if param["in"] == "path":  # an id (order, challenge, account) or a ticket
        odd = st.one_of(st.sampled_from(_ODD_DIGITS), _ODD_TEXT)
        if "pattern" in schema:
            odd = st.one_of(odd, st.integers(0, 12).map(str), st.integers(0, 10**25).map(str))
        live = _live(name, seen)
        return str(draw(odd if live is None else st.one_of(live, live, odd)))
    if name == "account":  # ?account= of an order
        return draw(st.one_of(_LIVE["account"].map(str), st.sampled_from(_ODD_DIGITS)))
    if name == "Idempotency-Key" and draw(st.integers(0, 3)):
        return draw(st.integers(0, 40).map("k{}".format))
    value = draw(
        st.one_of(
            st.none(),
            _from_schema(schema).map(str),
            st.sampled_from(["nan", "inf", "-1", "", "1e999", *_ODD_DIGITS]),
            st.text(st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=20),
        )
    )
    return None if value is None else str(value)


@st.composite
def requests(
    draw: st.DrawFn, spec: dict[str, Any], seen: Seen
) -> tuple[str, str, dict[str, Any], Any]:
    """(method, URL, headers, body) for one operation of ``spec``. Header values are
    bytes: any byte from 0x20 up goes on the wire as it is (the server reads latin-1)."""
    ops = sorted((p, m) for p, item in spec["paths"].items() for m in item)
    path, method = draw(st.sampled_from(ops))
    op = spec["paths"][path][method]
    url, query, headers = path, [], dict[str, Any]()
    for param in op.get("parameters", []):
        value = _param(draw, param, seen)
        if param["in"] == "path":
            url = url.replace("{" + param["name"] + "}", quote(value or "", safe=""))
        elif value is None:
            continue
        elif param["in"] == "query":
            query.append(f"{param['name']}={quote(value, safe='')}")
        else:
            headers[param["name"]] = value.encode()
    if "security" in op and draw(st.integers(0, 9)):  # the token, but not always
        headers.update(ADMIN)
    if draw(st.booleans()):
        headers["X-Forwarded-For"] = draw(_ODD_TEXT).encode()
    if query:
        url += "?" + "&".join(query)
    return method.upper(), url, headers, draw(_body(path, op, seen))


# ------------------------------------------------------------------ the test


Service = tuple[TestClient, dict[str, Any], Seen]


@pytest.fixture
def service(db: str) -> Iterator[Service]:
    """The fuzz sale on ``db``, its OpenAPI document and what it handed out (one per
    test, not per example: the sale's state builds up across examples)."""
    with client(db, fuzz_scenario()) as c:
        yield c, c.get("/openapi.json").json(), {}


def test_every_operation_is_fuzzed(service: Service) -> None:
    """The fuzz draws from the served document, which lists every operation."""
    _, spec, _ = service
    documented = {(m.upper(), p) for p, item in spec["paths"].items() for m in item}
    assert documented == set(OPERATIONS)


@settings(
    max_examples=1500,
    deadline=None,  # PostgreSQL answers vary with the machine's load; no time assertions
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    database=None,
    derandomize=True,
)
@given(data=st.data())
def test_no_request_gets_a_5xx(service: Service, data: st.DataObject) -> None:
    c, spec, seen = service
    method, url, headers, body = data.draw(requests(spec, seen), label="request")
    r = c.request(method, url, headers=headers, content=body)
    harvest(seen, r.json())
    assert r.status_code < 500, (method, url, body[:200] if body else body, r.text[:300])
    if r.status_code >= 400:
        err = r.json()
        assert isinstance(err, dict) and {"error", "detail", "field"} <= err.keys(), err
        assert isinstance(err["error"], str) and isinstance(err["detail"], str), err
