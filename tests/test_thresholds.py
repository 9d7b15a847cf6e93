"""Threshold verdicts and the exit codes that gate a CI pipeline."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from flashsale.cli import app
from flashsale.metrics import compute_metrics
from flashsale.scenario import Threshold
from flashsale.thresholds import BREACHED, OK, check_thresholds, exit_code

from .test_metrics_data import make_outcome, make_run, scenario, synthetic_outcome


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


def _nothing_sold() -> list[dict[str, object]]:
    """Three humans and an operator's two accounts carted; every payment failed."""
    rows: list[dict[str, object]] = [
        {"person": p, "result": "cart_failed", "carted": 1.0} for p in range(3)
    ]
    rows += [{"kind": "bot", "person": 9, "result": "cart_failed", "carted": 0.5} for _ in range(2)]
    return rows


def test_fairness_threshold_fails_on_a_sale_that_sold_nothing() -> None:
    # Jain of all zeros is 0/0: undefined, so ">= 0.5" cannot hold (it used to pass on 1).
    outs = [make_outcome(_nothing_sold()) for _ in range(2)]
    doc = compute_metrics(scenario(), outs)
    metrics = doc["metrics"]
    assert metrics["units_per_person_jain"]["values"] == [None, None]
    assert metrics["units_per_person_gini"]["mean"] is None
    checks = [
        Threshold(metric="units_per_person_jain", op=">=", value=0.5),
        Threshold(metric="units_per_person_gini", op="<=", value=0.5),
        Threshold(metric="bot_unit_share", op="<=", value=0.5),
        Threshold(metric="oversold_units", op="==", value=0),
    ]
    jain_v, gini_v, bots_v, over_v = check_thresholds(checks, metrics)
    for v in (jain_v, gini_v, bots_v):
        assert not v.passed
        assert str(v).startswith(f"FAIL {v.threshold}: undefined in 2 of 2 replications")
        assert v.as_json()["undefined_in"] == 2
    assert over_v.passed and over_v.why_undefined is None
    assert exit_code([jain_v, over_v]) == BREACHED


def test_a_metric_undefined_in_some_replications_fails_despite_the_others_mean() -> None:
    th = Threshold(metric="units_per_person_jain", op=">=", value=0.5)
    block = {"values": [0.9, None, 0.8], "mean": 0.85, "ci_low": None, "ci_high": None, "n": 2}
    [v] = check_thresholds([th], {"units_per_person_jain": block})
    assert not v.passed
    assert v.value == 0.85  # the others' mean is still reported
    assert str(v) == (
        "FAIL units_per_person_jain >= 0.5: undefined in 1 of 3 replications "
        "(mean of the other 2: 0.85)"
    )
    assert v.as_json()["reason"] == "undefined in 1 of 3 replications"


@pytest.mark.slow
def test_simulated_sale_that_sold_nothing_breaches_a_fairness_threshold(
    smoke_path: Path, tmp_path: Path
) -> None:
    out = tmp_path / "run"
    res = CliRunner().invoke(
        app,
        [
            "simulate",
            str(smoke_path),
            "--set",
            "service.payment.failure_prob=1.0",
            "--set",
            'thresholds.units_per_person_jain=">= 0.5"',
            "--replications",
            "2",
            "--workers",
            "1",
            "--out",
            str(out),
        ],
    )
    assert res.exit_code == 1, res.output
    assert "FAIL units_per_person_jain >= 0.5: undefined in 2 of 2 replications" in res.output
    doc = json.loads((out / "metrics.json").read_text())
    assert doc["metrics"]["units_sold"]["values"] == [0, 0]
    for name in ("units_per_person_gini", "units_per_person_jain", "bot_unit_share"):
        assert doc["metrics"][name]["values"] == [None, None], name
        assert doc["metrics"][name]["mean"] is None, name
    [jain_check] = [t for t in doc["thresholds"] if t["metric"] == "units_per_person_jain"]
    assert jain_check["passed"] is False and jain_check["value"] is None
    page = (out / "report.html").read_text()
    assert "undefined in 2 of 2 replications" in page
    assert len(list((out / "charts").glob("*.png"))) >= 4
