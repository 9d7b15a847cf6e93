"""Confidence intervals against the direct Student t formula."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats

from flashsale.stats import band, mean_ci, paired_diff, summarize


def test_mean_ci_matches_the_t_formula() -> None:
    x = [2.0, 4.0, 4.0, 5.0, 7.0, 8.0]
    m, lo, hi, n = mean_ci(x)
    s = np.std(x, ddof=1)
    half = stats.t.ppf(0.975, len(x) - 1) * s / math.sqrt(len(x))
    assert (m, n) == (pytest.approx(5.0), 6)
    assert (lo, hi) == pytest.approx((5.0 - half, 5.0 + half))
    # Same as scipy's own interval on the standard error.
    assert (lo, hi) == pytest.approx(stats.t.interval(0.95, 5, loc=5.0, scale=stats.sem(x)))


def test_mean_ci_small_and_empty_samples() -> None:
    assert mean_ci([]) == (None, None, None, 0)
    assert mean_ci([None, None]) == (None, None, None, 0)
    assert mean_ci([3.0]) == (3.0, None, None, 1)
    assert mean_ci([2.0, 2.0, 2.0]) == (2.0, 2.0, 2.0, 3)
    # Nulls are left out; n counts what was used.
    m, _, hi, n = mean_ci([1.0, None, 3.0])
    assert (m, n) == (2.0, 2)
    assert hi - m == pytest.approx(stats.t.ppf(0.975, 1) * math.sqrt(2) / math.sqrt(2))


def test_summarize_keeps_values() -> None:
    out = summarize([1, None, 3])
    assert out["values"] == [1, None, 3]
    assert out["n"] == 2


def test_summarize_stores_nan_as_null() -> None:
    # NaN is not JSON; an undefined value is null in metrics.json, and left out of n.
    out = summarize([math.nan, 2.0])
    assert out["values"] == [None, 2.0]
    assert (out["mean"], out["n"]) == (2.0, 1)
    assert summarize([None, None])["mean"] is None


def test_paired_difference_drops_pairs_with_an_undefined_side() -> None:
    d = paired_diff([1.0, None, 3.0, 4.0], [2.0, 5.0, None, 6.0])
    assert d["values"] == [1.0, None, None, 2.0]
    assert (d["mean"], d["n"]) == (pytest.approx(1.5), 2)


def test_band_is_pointwise_t_interval() -> None:
    rows = np.array([[1.0, 10.0, np.nan], [3.0, 10.0, 5.0], [5.0, 10.0, np.nan]])
    b = band(rows)
    _, lo, hi, _ = mean_ci([1.0, 3.0, 5.0])
    assert b["mean"] == pytest.approx([3.0, 10.0, 5.0])
    assert (b["ci_low"][0], b["ci_high"][0]) == pytest.approx((lo, hi))
    assert b["ci_low"][1] == pytest.approx(10.0)
    assert b["ci_low"][2] is None  # one value: no interval


def test_paired_difference_is_tighter_than_independent_intervals() -> None:
    rng = np.random.default_rng(4)
    shared = rng.normal(100, 10, 8)  # the common random numbers' shared noise
    base = shared + rng.normal(0, 0.5, 8)
    other = shared + 2 + rng.normal(0, 0.5, 8)
    d = paired_diff(list(base), list(other))
    _, lo_d, hi_d, _ = mean_ci(list(other - base))
    assert (d["ci_low"], d["ci_high"]) == pytest.approx((lo_d, hi_d))
    assert d["ci_low"] > 0  # the paired interval resolves the +2 shift...
    _, _, hi_a, _ = mean_ci(list(base))
    _, lo_b, _, _ = mean_ci(list(other))
    assert lo_b < hi_a  # ...which the independent intervals cannot
    assert paired_diff([1.0, None], [2.0, 3.0])["n"] == 1


def test_paired_difference_needs_equal_lengths() -> None:
    with pytest.raises(ValueError, match="equal lengths"):
        paired_diff([1.0], [1.0, 2.0])


def test_intervals_are_clipped_to_what_the_metric_can_take() -> None:
    out = summarize([0.0, 0.0, 0.03], bounds=(0.0, 1.0))
    assert out["ci_low"] == 0.0  # the raw t interval reaches below zero
    half = stats.t.ppf(0.975, 2) * np.std([0.0, 0.0, 0.03], ddof=1) / math.sqrt(3)
    assert out["ci_high"] == pytest.approx(0.01 + half)
    b = band(np.array([[0.99, 0.0], [1.0, 0.0], [1.0, 0.03]]), bounds=(0.0, 1.0))
    assert b["ci_high"][0] == 1.0 and b["ci_low"][1] == 0.0


def test_a_time_interval_is_clipped_at_zero_with_no_upper_bound() -> None:
    # Sell-out in 7 s and 5 s: the t interval is 6 +/- 12.7 s; a time cannot be negative.
    out = summarize([7.0, 5.0], bounds=(0.0, None))
    half = stats.t.ppf(0.975, 1) * np.std([7.0, 5.0], ddof=1) / math.sqrt(2)
    assert out["ci_low"] == 0.0
    assert out["ci_high"] == pytest.approx(6.0 + half)
    assert summarize([7.0, 5.0], bounds=(None, 10.0))["ci_high"] == 10.0
