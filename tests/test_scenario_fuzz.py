"""Fuzz: every scenario field, given a bad value, is refused one way (issue 13).

The fields come from the schema itself (flashsale.scenario, walked like the
README check in test_docs.py), so a new field is fuzzed without a new test. For
each one hypothesis draws values of the wrong type, values outside the range the
field declares, and non-finite numbers; each goes in with ``--set`` through the
CLI's ``validate`` command, in process. The answer must be exit 2 and one
``error:`` line naming the file and the field and saying what is allowed, no
traceback, and no hang (HANG_S per example: a safety bound; how fast ``validate``
answers is bench/cli_startup.py's).
"""

from __future__ import annotations

import datetime as dt
import json
import math
import re
import types
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Annotated, Any, Literal, Union, get_args, get_origin

import annotated_types as at
import pytest
import typer
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import BaseModel
from pydantic.fields import FieldInfo
from typer.testing import CliRunner

from flashsale.cli import validate
from flashsale.distributions import Constant, Exponential, Gamma, Lognormal, Uniform, _Dist
from flashsale.scenario import (
    MAX_DURATION_S,
    BurstArrivals,
    Channel,
    PoissonArrivals,
    Scenario,
    _model_of,
)

from .conftest import SCENARIOS

SMOKE = SCENARIOS / "smoke.toml"
runner = CliRunner()
VALIDATE = typer.Typer(add_completion=False, pretty_exceptions_enable=False)
VALIDATE.command()(validate)  # the CLI's own validate, alone: 4 ms a call, not 30
INF = math.inf
HANG_S = dt.timedelta(seconds=60)
"""Hypothesis's deadline per example: only a hang fails it, on however loaded a machine."""
_TEXT = st.text("abcXYZ019 _-./:", max_size=12)
_HUGE = 10**25  # beyond every limit, still a TOML integer tomllib reads

# a valid channel table for smoke's sale, and a valid parameter set for each dist
_CHANNEL = {"name": "web", "stock_share": 1.0, "demand_share": 1.0}
_DISTS: dict[type[_Dist], dict[str, Any]] = {
    Constant: {"dist": "constant", "value": 1.0},
    Exponential: {"dist": "exponential", "mean": 1.0},
    Lognormal: {"dist": "lognormal", "median": 1.0, "sigma": 0.5},
    Uniform: {"dist": "uniform", "low": 1.0, "high": 2.0},
    Gamma: {"dist": "gamma", "mean": 1.0, "cv": 0.5},
}

# fields whose rule is a validator, not a declared type or bound: known bad text
_BAD_TEXT = {
    "target.base_url": ["ftp://x", "http://", "not a url", "http://a b", "http://[::1"],
    "target.python_class": ["shop", "a b:C", "mod:", ":C"],
    "target.patience_header": ["bad name", "X-A\r\n"],
    "name": ["a b", "", "x/y", "é"],
}
_RULE = {"status": 201, "meaning": "ok"}
_STEP = {"method": "POST", "path": "/cart", "answers": [_RULE]}
_BAD_PROTOCOL: dict[str, list[Any]] = {
    # each is refused: a protocol is checked as it loads, like every other field
    "target.steps": [
        3,
        {"cart": _STEP, "pay": _STEP, "checkout": _STEP},  # not a step
        {"cart": {**_STEP, "path": "cart"}, "pay": _STEP},
        {"cart": {**_STEP, "path": "/a b"}, "pay": _STEP},
        {"cart": {**_STEP, "method": "FETCH"}, "pay": _STEP},
        {"cart": {**_STEP, "answers": [{"meaning": "great"}]}, "pay": _STEP},
        {"cart": {**_STEP, "answers": [{"status": 99, "meaning": "ok"}]}, "pay": _STEP},
        {"cart": {**_STEP, "answers": [{"status": "6xx", "meaning": "ok"}]}, "pay": _STEP},
        {"cart": {**_STEP, "answers": [{**_RULE, "body": "("}]}, "pay": _STEP},
        {"cart": {**_STEP, "answers": [{**_RULE, "capture": {"x": "jsn:a"}}]}, "pay": _STEP},
        {"cart": {**_STEP, "path": "/c/{nope}"}, "pay": _STEP},  # nothing captures it
        {"cart": {**_STEP, "path": "/c/{a!r}"}, "pay": _STEP},
        {"cart": {**_STEP, "path": "/c/{"}, "pay": _STEP},
        {"cart": {**_STEP, "json": {}, "form": {}}, "pay": _STEP},
        {"cart": {**_STEP, "headers": {"X-A": "b\r\nEvil: 1"}}, "pay": _STEP},
        {"cart": {**_STEP, "headers": {"bad name": "x"}}, "pay": _STEP},
    ],
    "target.answers": [3, [{"meaning": "great"}], [{"status": [], "meaning": "ok"}]],
    "target.reset": [3, {"method": "FETCH"}, {"command": []}, {"path": "/r?u={nope}"}],
    "target.audit": [3, {"command": ["x"], "fields": {}}, {"path": "/a", "fields": {"sold": "s"}}],
}
_BAD_TABLES: dict[str, list[Any]] = {
    **_BAD_PROTOCOL,
    # worker pools per step: tests/test_scenario_pools.py for more
    "service.pools": [
        3,
        {"pay": 3},
        {"pay": {"steps": []}},
        {"pay": {"steps": ["checkout"]}},
        {"pay": {"steps": ["pay", "pay"]}},
        {"pay": {"steps": ["pay"], "workers": 0}},
        {"pay": {"steps": ["pay"], "queue_limit": -1}},
        {"pay": {"steps": ["pay"], "queue_timeout_s": 0}},
        {"a": {"steps": ["pay"]}, "b": {"steps": ["pay"]}},  # a step in two pools
        {"default": {"steps": ["pay"]}},
        {"bad name": {"steps": ["pay"]}},
    ],
}


@dataclass(frozen=True)
class Leaf:
    """One field as a user writes it (``path``) and as an error names it (``shown``)."""

    path: str
    shown: str
    bad: st.SearchStrategy[tuple[Any, str]]  # (value, a pattern the error must match)
    wrap: Callable[[Any], tuple[str, Any]]  # a bad value -> (--set path, --set value)
    good: st.SearchStrategy[Any] | None = None  # values in the field's own range


def _lit(v: Any) -> str:
    """A value as the TOML literal ``--set`` reads (inf, -inf, nan and 1e+300 are TOML)."""
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int | float):
        return repr(v)
    if isinstance(v, str):
        return json.dumps(v)
    if isinstance(v, list):
        return "[" + ", ".join(_lit(x) for x in v) + "]"
    assert isinstance(v, dict), v
    return "{" + ", ".join(f"{json.dumps(k)} = {_lit(x)}" for k, x in v.items()) + "}"


def _members(ann: Any, meta: list[Any]) -> list[tuple[Any, list[Any]]]:
    """``(type, metadata)`` for each member of a union, Annotated metadata collected."""
    if get_origin(ann) is Annotated:
        base, *more = get_args(ann)
        flat = [x for m in more for x in (m.metadata if isinstance(m, FieldInfo) else [m])]
        return _members(base, meta + flat)
    if get_origin(ann) in (Union, types.UnionType):
        return [m for a in get_args(ann) for m in _members(a, meta)]
    return [(ann, meta)]


_ATTR = {at.Ge: "ge", at.Gt: "gt", at.Le: "le", at.Lt: "lt", at.MaxLen: "max_length"}
_ATTR[at.MinLen] = "min_length"


def _bound(meta: list[Any], *kinds: type) -> tuple[float | None, bool]:
    """The first bound of ``kinds`` in ``meta`` and whether it is strict (gt/lt)."""
    for m in meta:
        for kind in kinds:
            if isinstance(m, kind):
                value = getattr(m, _ATTR[kind])
                return value, kind in (at.Gt, at.Lt)
    return None, False


def _bounds(meta: list[Any]) -> tuple[float | None, bool, float | None, bool]:
    lo, lo_strict = _bound(meta, at.Ge, at.Gt)
    hi, hi_strict = _bound(meta, at.Le, at.Lt)
    return lo, lo_strict, hi, hi_strict


def _tagged(s: st.SearchStrategy[Any], must: str) -> st.SearchStrategy[tuple[Any, str]]:
    return s.map(lambda v: (v, must))


def _limit(bound: float) -> str:
    """A bound the way an error message must hold it: pydantic writes 1e12 as
    1000000000000 and 1e-6 as 0.000001, so the digits without trailing zeros."""
    text = f"{bound:f}".rstrip("0").rstrip(".")
    return text if "." in text else str(int(bound))


def _not_a_number() -> st.SearchStrategy[tuple[Any, str]]:
    return st.one_of(
        _tagged(st.booleans(), "valid"),
        _tagged(_TEXT, "valid"),
        _tagged(st.lists(st.integers(0, 9), max_size=2), "valid"),
    )


def _bad_int(meta: list[Any]) -> st.SearchStrategy[tuple[Any, str]]:
    lo, lo_strict, hi, _ = _bounds(meta)
    assert lo is not None and hi is not None
    low = int(lo) if lo_strict else int(lo) - 1
    return st.one_of(
        _not_a_number(),
        _tagged(st.floats(), "valid integer"),  # 3.0 too: strict, not coerced
        _tagged(st.integers(-_HUGE, low), _limit(lo)),
        _tagged(st.integers(int(hi) + 1, _HUGE), _limit(hi)),
    )


def _bad_float(
    meta: list[Any], hi_default: float | None = None
) -> st.SearchStrategy[tuple[Any, str]]:
    lo, lo_strict, hi, _ = _bounds(meta)
    hi = hi if hi is not None else hi_default
    assert lo is not None and hi is not None
    finite = {"allow_nan": False, "allow_infinity": False}
    return st.one_of(
        _not_a_number(),
        _tagged(st.sampled_from([INF, -INF, math.nan]), "finite number"),
        _tagged(st.floats(-1e300, lo, exclude_max=not lo_strict, **finite), _limit(lo)),
        _tagged(st.floats(hi, 1e300, exclude_min=True, **finite), _limit(hi)),
    )


def _bad_text(path: str, meta: list[Any]) -> st.SearchStrategy[tuple[Any, str]]:
    options: list[st.SearchStrategy[tuple[Any, str]]] = [
        _tagged(st.integers(-5, 5) | st.floats(-1, 1) | st.booleans(), "valid string"),
        _tagged(st.lists(_TEXT, max_size=2), "valid string"),
    ]
    hi, _ = _bound(meta, at.MaxLen)
    if hi is not None:
        options.append(_tagged(st.integers(int(hi) + 1, int(hi) + 50).map("x".__mul__), str(hi)))
    lo, _ = _bound(meta, at.MinLen)
    if lo:
        options.append(_tagged(st.just(""), str(lo)))
    known = _BAD_TEXT.get(path, [])
    if known:
        options.append(_tagged(st.sampled_from(known), ""))
    return st.one_of(options)


def _bad_scalar(path: str, field: FieldInfo) -> st.SearchStrategy[tuple[Any, str]]:
    members = _members(field.annotation, list(field.metadata))
    kinds = {m for m, _ in members if m is not type(None)}
    if kinds == {bool}:
        return st.one_of(
            _tagged(
                st.integers(-2, 2) | st.floats(0, 1) | st.sampled_from(["yes", "true", "1"]),
                "valid boolean",
            ),
            _tagged(st.lists(st.booleans(), max_size=2), "valid boolean"),
        )
    literals = [v for m, _ in members if get_origin(m) is Literal for v in get_args(m)]
    numbers = [(m, meta) for m, meta in members if m in (int, float)]
    if numbers:  # an int or float, perhaps also a Literal word (resale.units = "cancelled")
        kind, meta = numbers[0]
        bad = _bad_int(meta) if kind is int else _bad_float(meta)
        if literals:  # one message for the union, naming both what it may be
            words = _TEXT.filter(lambda t: t not in literals)
            return st.one_of(bad, words).map(
                lambda vm: (vm[0] if isinstance(vm, tuple) else vm, repr(literals[0]))
            )
        return bad
    if literals:  # the message shows the allowed word or number
        allowed = repr(literals[0]) if isinstance(literals[0], str) else str(literals[0])
        return st.one_of(
            _tagged(_TEXT.filter(lambda t: t not in literals), allowed),
            _tagged(st.integers(-2, 2).filter(lambda v: v not in literals), allowed),
            _tagged(st.booleans(), allowed),
        )
    if kinds & {dt.date, dt.time}:
        return st.one_of(
            _tagged(st.integers(-5, 5) | st.booleans() | st.just("soon"), "must be a TOML"),
            _tagged(
                st.sampled_from(["2021-13-45", "25:61:00", "2021-02-30"]), "must be a TOML|valid"
            ),
        )
    if str in kinds:
        return _bad_text(path, [x for m, meta in members if m is str for x in meta])
    if get_origin(field.annotation) is dict:
        return _tagged(
            st.sampled_from(
                [3, "x", [1], {"X-A": 1}, {"bad name": "x"}, {"X-A": "b\r\nEvil: 1"}, {"": "x"}]
            ),
            "",
        )
    raise AssertionError(f"{path}: no bad values for {field.annotation}")


def _in_range(
    kind: Any, meta: list[Any], hi_default: float | None = None
) -> st.SearchStrategy[Any]:
    """Any value the field's own declaration allows, edges included."""
    lo, lo_strict, hi, hi_strict = _bounds(meta)
    hi = hi if hi is not None else hi_default
    assert lo is not None and hi is not None
    if kind is int:
        return st.integers(int(lo) + lo_strict, int(hi) - hi_strict)
    return st.floats(lo, hi, exclude_min=lo_strict, exclude_max=hi_strict)


def _good_scalar(field: FieldInfo) -> st.SearchStrategy[Any] | None:
    numbers = [(m, meta) for m, meta in _members(field.annotation, list(field.metadata))]
    numbers = [(m, meta) for m, meta in numbers if m in (int, float)]
    return _in_range(*numbers[0]) if numbers else None


@st.composite
def _good_distribution(draw: st.DrawFn) -> dict[str, Any]:
    cls = draw(st.sampled_from(list(_DISTS)))
    params = {}
    for name, field in cls.model_fields.items():
        if name != "dist":
            params[field.alias or name] = draw(
                _in_range(float, list(field.metadata), MAX_DURATION_S)
            )
    return {**_DISTS[cls], **params}


def _bad_distribution() -> st.SearchStrategy[tuple[Any, str]]:
    """A bare bad number or word, an unknown ``dist``, or one bad parameter in a good table."""

    @st.composite
    def one_bad_parameter(draw: st.DrawFn) -> tuple[Any, str]:
        cls = draw(st.sampled_from(list(_DISTS)))
        params = [n for n in cls.model_fields if n != "dist"]
        name = draw(st.sampled_from(params))
        field = cls.model_fields[name]
        # a constant's upper bound is a validator's (math.inf stays possible in code)
        value, must = draw(_bad_float(list(field.metadata), MAX_DURATION_S))
        return {**_DISTS[cls], field.alias or name: value}, must

    return st.one_of(
        _tagged(st.sampled_from([INF, -INF, math.nan]), "finite number"),
        _tagged(st.sampled_from([-1, -1e-9]), "greater than or equal to 0"),
        _tagged(st.sampled_from([2_592_001, 1e12]), "less than or equal to 2592000"),
        _tagged(st.sampled_from([True, "fast", [1.0], {}]), ""),
        _tagged(_TEXT.map(lambda t: {"dist": f"x{t}", "mean": 1.0}), "Input tag"),
        one_bad_parameter(),
    )


def _bad_arrivals() -> st.SearchStrategy[tuple[Any, str]]:
    return _tagged(
        st.sampled_from([3, "burst", [1], {"profile": "weird"}, {"profile": "poisson"}]), ""
    )


def _bad_thresholds() -> st.SearchStrategy[tuple[Any, str]]:
    return _tagged(
        st.sampled_from(
            [
                3,
                "x",
                [1],
                {"nope": "< 1"},
                {"units_sold": "~ 1"},
                {"units_sold": "< inf"},
                {"units_sold": "< 1e999"},
                {"units_sold": 3},
                {"units_sold": True},
            ]
        ),
        "",
    )


def _bad_channels() -> st.SearchStrategy[tuple[Any, str]]:
    many = [{"name": f"c{i}", "stock_share": 1 / 300, "demand_share": 1 / 300} for i in range(300)]
    return _tagged(st.sampled_from([[], 3, [3], "web", many]), "")


def _direct(path: str) -> Callable[[Any], tuple[str, Any]]:
    return lambda v: (path, v)


def _is_dist(model: Any) -> bool:
    return isinstance(model, type) and issubclass(model, _Dist)


def _leaves(model: type[BaseModel], prefix: str = "") -> Iterator[Leaf]:
    for name, field in model.model_fields.items():
        key = field.alias or name
        path = f"{prefix}{key}"
        sub = _model_of(field.annotation)
        if path == "thresholds":
            yield Leaf(path, path, _bad_thresholds(), _direct(path))
        elif path in _BAD_TABLES:  # tables of named parts, each checked as it loads
            bad = _tagged(st.sampled_from(_BAD_TABLES[path]), "")
            yield Leaf(path, path, bad, _direct(path))
        elif _is_dist(sub):
            yield Leaf(path, path, _bad_distribution(), _direct(path), _good_distribution())
        elif key == "arrivals":
            yield Leaf(path, path, _bad_arrivals(), _direct(path))
            for arr in (BurstArrivals, PoissonArrivals):
                for f, info in arr.model_fields.items():
                    if f == "profile":  # the tag: a bad one is _bad_arrivals' case
                        continue

                    def poisson(v: Any, f: str = f, path: str = path) -> tuple[str, Any]:
                        return path, {"profile": "poisson", "rate_per_s": 1.0, f: v}

                    wrap = _direct(f"{path}.{f}") if arr is BurstArrivals else poisson
                    bad = _bad_scalar(f"{path}.{f}", info)
                    yield Leaf(f"{path}.{f}", f"{path}.{f}", bad, wrap, _good_scalar(info))
        elif sub is Channel:
            yield Leaf(path, path, _bad_channels(), _direct(path))
            for f, info in Channel.model_fields.items():

                def channel(v: Any, f: str = f, path: str = path) -> tuple[str, Any]:
                    return path, [{**_CHANNEL, f: v}]

                bad = _bad_scalar(f"{path}.{f}", info)
                yield Leaf(f"{path}[].{f}", f"{path}[0].{f}", bad, channel, _good_scalar(info))
        elif sub is not None:
            yield from _leaves(sub, f"{path}.")
        else:
            good = _good_scalar(field)
            yield Leaf(path, path, _bad_scalar(path, field), _direct(path), good)


LEAVES = list(_leaves(Scenario))


def test_the_walk_reaches_every_part_of_the_schema() -> None:
    paths = {leaf.path for leaf in LEAVES}
    assert len(paths) == len(LEAVES) >= 90
    for p in (
        "schema_version",
        "sale.channels[].stock_share",
        "humans.arrivals.rate_per_s",
        "humans.think_s",
        "service.payment.gateway_s",
        "service.pools",
        "defenses.resale.units",
        "target.steps",
        "target.reset",
        "target.headers",
        "outputs.timeline_interval_s",
        "thresholds",
    ):
        assert p in paths, p


def _numbers() -> Iterator[tuple[str, Any, list[Any]]]:
    """Every int and float in the schema, distributions' parameters included."""
    models: list[tuple[str, type[BaseModel]]] = [("", Scenario)]
    seen = set()
    while models:
        prefix, model = models.pop()
        if model in seen:
            continue
        seen.add(model)
        for name, field in model.model_fields.items():
            for kind, meta in _members(field.annotation, list(field.metadata)):
                if kind in (int, float):
                    yield f"{prefix}{model.__name__}.{name}", kind, meta
            for sub in _all_models(field.annotation):
                models.append(("", sub))


def _all_models(ann: Any) -> Iterator[type[BaseModel]]:
    if isinstance(ann, type) and issubclass(ann, BaseModel):
        yield ann
    for arg in get_args(ann):
        yield from _all_models(arg)


def test_every_number_in_the_schema_has_both_bounds() -> None:
    """One limit mechanism: a number without a declared range cannot be added unnoticed."""
    unbounded = []
    for where, _kind, meta in _numbers():
        lo, _, hi, _ = _bounds(meta)
        if where == "Threshold.value":  # any finite number, checked as the text is parsed
            continue
        if where.startswith("Match."):  # compared with an answer's JSON: any finite number
            continue
        if where == "AnswerRule.status":  # 100-599, checked with its list and class forms
            continue
        if lo is None or (hi is None and where != "Constant.value"):  # inf: engines only
            unbounded.append(where)
    assert not unbounded, f"numbers without a lower and an upper bound: {unbounded}"


def test_every_model_is_strict_and_finite() -> None:
    models = {m for _, m in [("", Scenario)]} | {
        sub for leaf_model in _all_models(Scenario) for sub in _walk_models(leaf_model)
    }
    models.discard(next(m for m in models if m.__name__ == "Threshold"))  # parsed from text
    for model in models:
        assert model.model_config.get("strict") is True, model.__name__
        assert model.model_config.get("allow_inf_nan") is False, model.__name__


def _walk_models(model: type[BaseModel]) -> Iterator[type[BaseModel]]:
    yield model
    for field in model.model_fields.values():
        for sub in _all_models(field.annotation):
            if sub is not model:
                yield from _walk_models(sub)


@pytest.mark.parametrize("leaf", LEAVES, ids=lambda leaf: leaf.path)
@settings(
    max_examples=12,
    deadline=HANG_S,  # no hang; not a speed claim (validation answers in milliseconds)
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(data=st.data())
def test_bad_value_exits_2_with_one_line_naming_the_field(leaf: Leaf, data: st.DataObject) -> None:
    value, must = data.draw(leaf.bad, label="bad value")
    path, written = leaf.wrap(value)
    r = runner.invoke(VALIDATE, [str(SMOKE), "--set", f"{path}={_lit(written)}"])
    assert r.exit_code == 2, (r.output, r.exception)
    assert r.exception is None or isinstance(r.exception, SystemExit), r.exception
    assert "Traceback" not in r.output
    lines = r.stderr.splitlines()
    assert len(lines) == 1, lines
    line = lines[0]
    assert line.startswith(f"error: {SMOKE}: "), line
    named = re.escape(leaf.shown).replace(r"\[0\]", r"\[0\]")
    assert re.match(rf"error: {re.escape(str(SMOKE))}: (--set )?{named}\b", line), line
    assert re.search(must, line), (must, line)  # what is allowed: a limit, a type, a word


def _check_clean(r: Any) -> None:
    assert r.exception is None or isinstance(r.exception, SystemExit), r.exception
    assert "Traceback" not in r.output


@pytest.mark.parametrize("leaf", [x for x in LEAVES if x.good is not None], ids=lambda x: x.path)
@settings(
    max_examples=8,
    deadline=HANG_S,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(data=st.data())
def test_any_value_in_range_is_accepted_or_refused_cleanly(leaf: Leaf, data: st.DataObject) -> None:
    """Extremes inside each range: the size estimate and the cross-field rules (shares,
    uniform low <= high, run too large) answer exit 0 or one clean line, never a crash."""
    assert leaf.good is not None
    path, written = leaf.wrap(data.draw(leaf.good, label="value in range"))
    r = runner.invoke(VALIDATE, [str(SMOKE), "--set", f"{path}={_lit(written)}"])
    _check_clean(r)
    assert r.exit_code in (0, 2), r.output
    if r.exit_code == 2:
        lines = r.stderr.splitlines()
        assert len(lines) == 1 and lines[0].startswith(f"error: {SMOKE}: "), lines
