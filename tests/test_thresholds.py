"""Threshold verdicts and the exit codes that gate a CI pipeline."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

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


# ------------------------------------------------- per step, and on an interval bound


def _th(key: str, op: str, value: float) -> Threshold:
    metric, _, bound = key.partition(":")
    return Threshold(metric=metric, op=op, value=value, bound=bound or "mean")


# Pay p95 of three replications, 1.8, 2.0 and 1.9 s: mean 1.9, s = 0.1, and the 95%
# Student t half-width t(0.975, 2) * s / sqrt(3) = 4.302653 * 0.1 / 1.732051 = 0.248414.
_PAY = {"values": [1.8, 2.0, 1.9], "mean": 1.9, "ci_low": 1.651586, "ci_high": 2.148414, "n": 3}
# Human success 0.55, 0.6, 0.5: mean 0.55, s = 0.05, half-width 0.124207.
_HUMANS = {
    "values": [0.55, 0.6, 0.5],
    "mean": 0.55,
    "ci_low": 0.425793,
    "ci_high": 0.674207,
    "n": 3,
}
_METRICS = {"latency_p95_s": {"pay": _PAY, "cart": _PAY}, "human_success_share": _HUMANS}


def test_the_mean_and_the_interval_s_top_decide_differently() -> None:
    on_mean, on_top = check_thresholds(
        [_th("latency_p95_s.pay", "<=", 2.0), _th("latency_p95_s.pay:ci_high", "<=", 2.0)],
        _METRICS,
    )
    assert on_mean.passed and on_mean.judged == 1.9
    assert not on_top.passed and on_top.judged == 2.148414
    # The verdict says which bound it judged, and still shows the mean and interval.
    assert str(on_top) == (
        "FAIL latency_p95_s.pay.ci_high <= 2: got 95% CI high 2.148 (mean 1.9, 95% CI 1.652 "
        "to 2.148)"
    )
    j = on_top.as_json()
    assert {k: j[k] for k in ("key", "metric", "bound", "value", "judged", "passed")} == {
        "key": "latency_p95_s.pay.ci_high",
        "metric": "latency_p95_s.pay",
        "bound": "ci_high",
        "value": 1.9,
        "judged": 2.148414,
        "passed": False,
    }
    assert exit_code([on_mean, on_top]) == BREACHED


def test_the_interval_s_bottom_decides_a_share_the_mean_lets_through() -> None:
    on_mean, on_low = check_thresholds(
        [_th("human_success_share", ">=", 0.5), _th("human_success_share:ci_low", ">=", 0.5)],
        _METRICS,
    )
    assert on_mean.passed
    assert not on_low.passed and on_low.judged == 0.425793
    assert str(on_low).startswith("FAIL human_success_share.ci_low >= 0.5: got 95% CI low 0.4258")
    # A lower limit on the interval's bottom holds where the whole interval is above it.
    [held] = check_thresholds([_th("human_success_share:ci_low", ">=", 0.4)], _METRICS)
    assert held.passed


def test_a_step_is_judged_on_its_own_block() -> None:
    fast = {**_PAY, "values": [0.1, 0.1, 0.1], "mean": 0.1, "ci_low": 0.1, "ci_high": 0.1}
    metrics = {"latency_p95_s": {"pay": _PAY, "cart": fast}}
    cart, pay = check_thresholds(
        [_th("latency_p95_s.cart", "<=", 1.0), _th("latency_p95_s.pay", "<=", 1.0)], metrics
    )
    assert cart.passed and cart.value == 0.1
    assert not pay.passed and pay.value == 1.9


def test_a_bound_of_one_replication_has_no_value_and_fails() -> None:
    [v] = check_thresholds(
        [_th("latency_p95_s.pay:ci_high", "<=", 5.0)], {"latency_p95_s": {"pay": _m(1.0)}}
    )
    assert not v.passed and v.judged is None
    assert str(v) == (
        "FAIL latency_p95_s.pay.ci_high <= 5: no 95% interval with 1 replication, no value to "
        "check (mean 1)"
    )


def test_a_bound_of_a_metric_undefined_in_a_replication_fails() -> None:
    block = {"values": [1.0, None, 1.2, 1.1], "mean": 1.1, "ci_low": 0.85, "ci_high": 1.35, "n": 3}
    [v] = check_thresholds([_th("sellout_time_s:ci_high", "<=", 300)], {"sellout_time_s": block})
    assert not v.passed
    assert str(v) == (
        "FAIL sellout_time_s.ci_high <= 300: undefined in 1 of 4 replications (of the other 3: "
        "95% CI high 1.35, mean 1.1, 95% CI 0.85 to 1.35)"
    )


def test_a_step_no_request_reached_fails_as_not_measured() -> None:
    [v] = check_thresholds([_th("latency_p95_s.captcha", "<=", 1.0)], _METRICS)
    assert not v.passed and v.value is None
    assert "not measured in this run" in str(v)


# ------------------------------------------ the case, on a real small simulation

# More checkout workers than journeys (1,000 humans + 50 bot accounts, one request each
# in flight at a time): no request ever waits, so every payment takes exactly the pay
# step's constant service time and the pay step's p95 is that time, in every replication.
_NO_WAIT = [
    "--set",
    "service.workers=2000",
    "--set",
    'service.step_s.pay={dist="constant", value=2.11}',
]


def _simulate(smoke: Path, out: Path, *checks: str) -> Any:
    return CliRunner().invoke(
        app,
        [
            "simulate", str(smoke), *_NO_WAIT,
            *(a for c in checks for a in ("--set", f"thresholds.{c}")),
            "--replications", "2", "--workers", "1", "--out", str(out),
        ],
    )  # fmt: skip


@pytest.mark.slow
def test_simulate_exits_1_when_pay_p95_of_2_11_s_breaches_2_s(
    smoke_path: Path, tmp_path: Path
) -> None:
    res = _simulate(
        smoke_path, tmp_path / "breach", 'latency_p95_s.pay="<= 2.0"',
        'latency_p95_s.pay.ci_high="<= 2.0"',
    )  # fmt: skip
    assert res.exit_code == 1, res.output
    assert "FAIL latency_p95_s.pay <= 2: got 2.11" in res.output
    assert "FAIL latency_p95_s.pay.ci_high <= 2: got 95% CI high 2.11" in res.output
    assert "2 threshold(s) breached: exit code 1" in res.output
    doc = json.loads((tmp_path / "breach" / "metrics.json").read_text())
    assert doc["metrics"]["latency_p95_s"]["pay"]["values"] == pytest.approx([2.11, 2.11])
    [top] = [t for t in doc["thresholds"] if t["bound"] == "ci_high"]
    assert top["metric"] == "latency_p95_s.pay" and top["judged"] == pytest.approx(2.11)
    page = (tmp_path / "breach" / "report.html").read_text()
    assert "95% CI high: 2.11 s" in page or "95% CI high 2.11 s" in page

    res = _simulate(smoke_path, tmp_path / "held", 'latency_p95_s.pay.ci_high="<= 2.2"')
    assert res.exit_code == 0, res.output
    assert "PASS latency_p95_s.pay.ci_high <= 2.2" in res.output


@pytest.mark.slow
def test_sweep_thresholds_column_is_not_ok_where_pay_p95_is_2_11_s(
    smoke_path: Path, tmp_path: Path
) -> None:
    out = tmp_path / "sweep"
    res = CliRunner().invoke(
        app,
        [
            "sweep", str(smoke_path), *_NO_WAIT,
            "--vary", "service.step_s.pay.value=1.5,2.11",
            "--set", 'thresholds.latency_p95_s.pay="<= 2.0"',
            "--set", 'thresholds.latency_p95_s.pay.ci_high="<= 2.0"',
            "--replications", "2", "--workers", "1", "--out", str(out),
        ],
    )  # fmt: skip
    assert res.exit_code == 1, res.output
    rows = {line.split()[0]: line for line in res.output.splitlines() if line.startswith("point-")}
    assert rows["point-000"].endswith(" ok")
    assert rows["point-001"].endswith(
        "FAIL: latency_p95_s.pay <= 2; latency_p95_s.pay.ci_high <= 2"
    )
    doc = json.loads((out / "sweep.json").read_text())
    slow = doc["results"][1]
    assert slow["metrics"]["latency_p95_s.pay"]["mean"] == pytest.approx(2.11)
    assert slow["breached"] == ["latency_p95_s.pay <= 2", "latency_p95_s.pay.ci_high <= 2"]
    judged = {t["key"]: t["judged"] for t in slow["thresholds"] if not t["passed"]}
    assert judged == pytest.approx({"latency_p95_s.pay": 2.11, "latency_p95_s.pay.ci_high": 2.11})
    assert doc["results"][0]["breached"] == []
    page = (out / "report.html").read_text()
    assert "latency_p95_s.pay.ci_high &lt;= 2: 95% CI high 2.11 s" in page
    # compare (each point judged by its own thresholds): console, compare.json, report.
    cmp_out = tmp_path / "cmp"
    res = CliRunner().invoke(
        app, ["compare", str(out / "point-000"), str(out / "point-001"), "--out", str(cmp_out)]
    )
    assert res.exit_code == 0, res.output
    assert "thresholds, run 2: 1 of 3 held" in res.output
    assert "FAIL latency_p95_s.pay.ci_high <= 2: 95% CI high 2.11 s" in res.output
    runs = json.loads((cmp_out / "compare.json").read_text())["runs"]
    assert [t["passed"] for t in runs[0]["thresholds"]] == [True, True, True]
    assert [t["passed"] for t in runs[1]["thresholds"]] == [True, False, False]
    assert "<h2>Threshold verdicts</h2>" in (cmp_out / "report.html").read_text()
