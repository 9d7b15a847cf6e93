"""The metric registry: threshold keys (per step, on a bound) and what a bad key says."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest
from typer.testing import CliRunner

from flashsale.cli import app
from flashsale.metric_registry import (
    KEY_FIGURES,
    METRICS,
    SUMMARY_FIGURES,
    SWEEP_COLUMNS,
    bounds_of,
    label_of,
    parse_threshold_key,
    unit_of,
)
from flashsale.outcome import STEP
from flashsale.scenario import load_scenario, parse_scenario

runner = CliRunner()


@pytest.mark.parametrize(
    ("key", "metric", "bound"),
    [
        ("sellout_time_s", "sellout_time_s", "mean"),
        ("sellout_time_s.mean", "sellout_time_s", "mean"),
        ("human_success_share.ci_low", "human_success_share", "ci_low"),
        ("latency_p95_s.pay", "latency_p95_s.pay", "mean"),
        ("latency_p95_s.pay.ci_high", "latency_p95_s.pay", "ci_high"),
        ("ambiguous_requests.cart.ci_high", "ambiguous_requests.cart", "ci_high"),
        ("outcome_rates.human.timed_out.ci_low", "outcome_rates.human.timed_out", "ci_low"),
    ],
)
def test_threshold_keys(key: str, metric: str, bound: str) -> None:
    assert parse_threshold_key(key) == (metric, bound)


@pytest.mark.parametrize(
    ("key", "says"),
    [
        ("sellout_time_s.pay", "'pay' after sellout_time_s (sellout_time_s is not per step)"),
        ("human_success_share.ci_hi", "allowed after it: .mean, .ci_low, .ci_high"),
        ("latency_p95_s", "latency_p95_s is per step: write latency_p95_s.<step>"),
        ("latency_p95_s.ci_high", "latency_p95_s is per step"),
        ("latency_p95_s.checkout", "unknown step 'checkout'; allowed: " + ", ".join(STEP)),
        ("latency_p95_s.pay.p99", "'p99' after latency_p95_s.pay: allowed after it: .mean"),
        ("outcome_rates.human.won", "unknown result 'won'; allowed: purchased"),
        ("latency_p95", "unknown metric 'latency_p95'; allowed: units_sold, "),
        ("success_by_arrival", "success_by_arrival is a curve, not a number"),
    ],
)
def test_a_bad_threshold_key_says_what_is_allowed(key: str, says: str) -> None:
    with pytest.raises(ValueError) as e:
        parse_threshold_key(key)
    assert says in str(e.value)


def test_a_per_step_key_on_a_metric_that_is_not_per_step_is_one_error_line(
    smoke_path: Path,
) -> None:
    r = runner.invoke(
        app, ["validate", str(smoke_path), "--set", 'thresholds.sellout_time_s.pay="<= 300"']
    )
    assert r.exit_code == 2, r.output
    [line] = r.stderr.splitlines()
    assert line.startswith(f"error: {smoke_path}: thresholds.sellout_time_s.pay: ")
    assert "allowed after it: .mean, .ci_low, .ci_high" in line
    assert "Traceback" not in r.output


def test_a_bad_key_in_a_file_names_the_file_and_the_key(tmp_path: Path, smoke_path: Path) -> None:
    p = tmp_path / "bad.toml"
    p.write_text(smoke_path.read_text() + '"latency_p95_s.paid.ci_high" = "<= 2"\n')
    r = runner.invoke(app, ["validate", str(p)])
    assert r.exit_code == 2, r.output
    [line] = r.stderr.splitlines()
    assert line.startswith(f"error: {p}: thresholds.latency_p95_s.paid.ci_high: unknown step")
    assert "allowed: view, captcha" in line


def test_per_step_and_bound_thresholds_round_trip_through_toml(smoke_path: Path) -> None:
    sc = load_scenario(
        smoke_path,
        [
            'thresholds.latency_p95_s.pay="<= 2.0"',  # both a mean and a bound of one metric
            'thresholds.latency_p95_s.pay.ci_high="<= 2.5"',
            'thresholds.human_success_share.ci_low=">= 0.05"',
        ],
    )
    got = {str(t) for t in sc.thresholds}
    assert got == {
        "oversold_units == 0",
        "latency_p95_s.pay <= 2",
        "latency_p95_s.pay.ci_high <= 2.5",
        "human_success_share.ci_low >= 0.05",
    }
    again = parse_scenario(tomllib.loads(sc.to_toml()), "again")
    assert again == sc


def test_toml_dotted_keys_unquoted_are_the_same_checks(smoke_path: Path, tmp_path: Path) -> None:
    p = tmp_path / "dotted.toml"
    p.write_text(smoke_path.read_text() + 'latency_p95_s.pay = "<= 2"\n')
    [_, pay] = load_scenario(p).thresholds
    assert (pay.metric, pay.bound, pay.value) == ("latency_p95_s.pay", "mean", 2.0)


def test_registry_units_bounds_and_labels() -> None:
    assert unit_of("latency_p95_s.pay") == "s"
    assert unit_of("outcome_rates.bot.sold_out") == "share"
    assert unit_of("ambiguous_requests.cart") == "requests"
    assert bounds_of("units_per_person_jain") == (0.0, 1.0)
    assert bounds_of("sellout_time_s") == (0.0, None)
    assert label_of("latency_p95_s.pay") == "latency p95, pay step"
    assert set(SUMMARY_FIGURES) <= set(KEY_FIGURES)  # printed after a run, then in the report
    assert ("latency_p95_s.pay", "latency p95, pay step") in SWEEP_COLUMNS
    assert len({m.name for m in METRICS}) == len(METRICS)
