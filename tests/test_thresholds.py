"""Threshold verdicts and the exit codes that gate a CI pipeline."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from flashsale.cli import app
from flashsale.scenario import Threshold
from flashsale.thresholds import BREACHED, OK, check_thresholds, exit_code

from .test_metrics_data import make_run, scenario, synthetic_outcome


def _m(mean: float | None, lo: float | None = None, hi: float | None = None) -> dict[str, object]:
    return {"values": [mean], "mean": mean, "ci_low": lo, "ci_high": hi, "n": 1}


@pytest.mark.parametrize(
    ("op", "limit", "value", "passed"),
    [
        ("==", 0, 0.0, True),
        ("==", 0, 0.5, False),
        ("==", 0.3, 0.1 + 0.2, True),  # float round-off in a mean must not fail "=="
        ("!=", 0, 1.0, True),
        (">=", 0.5, 0.5, True),
        (">=", 0.5, 0.49, False),
        (">", 0.5, 0.5, False),
        ("<=", 0.01, 0.02, False),
        ("<", 10, 9.9, True),
    ],
)
def test_operators(op: str, limit: float, value: float, passed: bool) -> None:
    th = Threshold(metric="yellow_cart_rate", op=op, value=limit)
    [v] = check_thresholds([th], {"yellow_cart_rate": _m(value)})
    assert v.passed is passed
    assert exit_code([v]) == (OK if passed else BREACHED)


def test_a_metric_without_value_fails_its_check() -> None:
    th = Threshold(metric="sellout_time_s", op="<=", value=300)
    [v] = check_thresholds([th], {"sellout_time_s": _m(None)})
    assert not v.passed
    assert "no value" in str(v)


def test_verdict_text_names_check_value_and_ci() -> None:
    th = Threshold(metric="human_success_share", op=">=", value=0.5)
    [v] = check_thresholds([th], {"human_success_share": _m(0.25, 0.2, 0.3)})
    assert str(v) == "FAIL human_success_share >= 0.5: got 0.25, 95% CI 0.2 to 0.3"
    assert v.as_json()["passed"] is False
    assert exit_code([]) == OK


def _run(tmp_path: Path, thresholds: dict[str, str]) -> Path:
    sc = scenario(
        sale={"units": 200, "window_s": 30},
        humans={"count": 300},
        bots={"operators": 3, "accounts_per_operator": 10, "units_per_order": 2},
        thresholds=thresholds,
    )
    outs = [synthetic_outcome(sc, np.random.default_rng(i)) for i in range(2)]
    make_run(tmp_path / "run", sc, outs)
    return tmp_path / "run"


@pytest.mark.slow
def test_report_exits_0_when_thresholds_hold(tmp_path: Path) -> None:
    run = _run(tmp_path, {"oversold_units": "== 0", "units_sold": "<= 200"})
    res = CliRunner().invoke(app, ["report", str(run)])
    assert res.exit_code == 0, res.output
    assert "PASS oversold_units == 0" in res.output


@pytest.mark.slow
def test_report_exits_1_listing_the_breaches(tmp_path: Path) -> None:
    run = _run(
        tmp_path,
        {"oversold_units": "== 0", "human_success_share": ">= 0.99", "bot_unit_share": "<= 0.01"},
    )
    res = CliRunner().invoke(app, ["report", str(run)])
    assert res.exit_code == 1, res.output
    assert "FAIL human_success_share >= 0.99" in res.output
    assert "FAIL bot_unit_share <= 0.01" in res.output
    assert "2 threshold(s) breached" in res.output
