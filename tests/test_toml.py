"""The scenario TOML writer (flashsale._toml, on tomlkit): what it writes reads back to
the same data, for every built-in scenario, for keys that cannot be bare and for
arrays of tables that hold sub-tables."""

from __future__ import annotations

import math
import tomllib
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from flashsale import _toml
from flashsale.cli import app
from flashsale.runs import open_run
from flashsale.scenario import load_scenario

from .conftest import SCENARIOS

BUILT_IN = sorted(SCENARIOS.glob("*.toml"))
runner = CliRunner()


def test_there_are_built_in_scenarios() -> None:
    assert len(BUILT_IN) >= 6, BUILT_IN


@pytest.mark.parametrize("path", BUILT_IN, ids=lambda p: p.stem)
def test_every_built_in_scenario_round_trips(path: Path, tmp_path: Path) -> None:
    sc = load_scenario(path)
    text = sc.to_toml()
    assert tomllib.loads(text) == sc.to_toml_dict()
    again = tmp_path / "again.toml"
    again.write_text(text, encoding="utf-8")
    assert load_scenario(again) == sc
    # distributions stay inline, as in the files people write
    assert "think_s = {dist = " in text


@pytest.mark.parametrize("path", BUILT_IN, ids=lambda p: p.stem)
def test_show_prints_a_file_that_loads(path: Path, tmp_path: Path) -> None:
    r = runner.invoke(app, ["show", str(path)])
    assert r.exit_code == 0, r.output
    shown = tmp_path / "shown.toml"
    shown.write_text(r.stdout, encoding="utf-8")
    assert load_scenario(shown) == load_scenario(path)


def test_a_run_folders_scenario_loads_back(tmp_path: Path) -> None:
    sc = load_scenario(SCENARIOS / "smoke.toml", ["humans.count=77"])
    with open_run(sc, "simulate", out=tmp_path / "run", seed=1, replications=1) as run:
        written = run.path / "scenario.toml"
        assert load_scenario(written) == sc
    assert not list((tmp_path / "run").glob(".*.partial"))  # written atomically


def test_keys_that_cannot_be_bare_are_quoted() -> None:
    data = {
        "target": {"headers": {"X-Café": "1", "X-Plain": "2"}},
        "thresholds": {"a.b": "== 0", "with space": "< 1", "": "> 2", 'q"uote': "ok"},
        "ключ": {"ü": 1},
    }
    text = _toml.dumps(data)
    assert '"X-Café" = "1"' in text
    assert tomllib.loads(text) == data


def test_an_array_of_tables_keeps_its_sub_tables() -> None:
    data = {
        "sale": {
            "channels": [
                {"name": "web", "limits": {"per_account": 2, "deep": {"x": [1, 2]}}},
                {"name": "app", "limits": {"per_account": 1}},
            ],
        },
        "after": {"x": 1},
    }
    text = _toml.dumps(data)
    assert tomllib.loads(text) == data


def test_strings_are_escaped() -> None:
    data = {"s": 'quote " backslash \\ newline \n tab \t nul \x00 del \x7f é 😀 \u2028'}
    assert tomllib.loads(_toml.dumps(data)) == data


def test_values_toml_cannot_hold_are_refused() -> None:
    with pytest.raises(TypeError, match="NoneType"):
        _toml.dumps({"a": None})
    with pytest.raises(TypeError, match="int key"):
        _toml.dumps({"a": {1: 2}})


def test_a_value_literal_reads_back() -> None:
    for value in [1, -2.5, True, "x\ny", [1, [2, "a"]], {"dist": "uniform", "low": 1, "high": 2}]:
        assert tomllib.loads(f"v = {_toml._toml_value(value)}")["v"] == value
    assert math.isinf(tomllib.loads(f"v = {_toml._toml_value(float('-inf'))}")["v"])


_keys = st.text(max_size=8)
_scalars = (
    st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**63 - 1)
    | st.floats(allow_nan=False)
    | st.text(max_size=12)
)
_values = st.recursive(
    _scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(_keys, inner, max_size=4),
    max_leaves=20,
)


@settings(max_examples=200, deadline=None)
@given(st.dictionaries(_keys, _values, max_size=6))
def test_any_data_round_trips(data: dict[str, Any]) -> None:
    assert tomllib.loads(_toml.dumps(data)) == data
