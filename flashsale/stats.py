"""Confidence intervals across replications: Student t on the mean, paired differences.

Why Student t and not a bootstrap: each replication is an independent run (its own
``SeedSequence(seed, r)``), and each per-replication metric is already an aggregate
over thousands of journeys, so it is close to normal (central limit theorem). With
the handful of replications a run usually has (3 to 10), the t distribution with
n - 1 degrees of freedom accounts for the unknown variance exactly under normality,
while a percentile bootstrap on five values under-covers badly (it can never be
wider than the sample's range).

Null values (a metric undefined in a replication, e.g. the sell-out time of a
replication that did not sell out, or the Gini of one that sold nothing) are left
out: the mean and interval describe the replications where the metric is defined,
``n`` says how many those were, and ``values`` keeps the nulls so that a reader (and
a threshold, which then fails) sees that the others had none. Why not null the mean
as soon as one replication is undefined: a sell-out time over the replications that
did sell out is still worth reading, next to "undefined in 1 of 5". One usable value
gives a mean without an interval; none gives a null mean.

An interval may be clipped to the values the metric can take (``bounds``): a
share's t interval can reach below 0 when replications agree closely near 0, and
"-0.6%" would only confuse a reader.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from scipy import stats as _st

__all__ = [
    "CI_LEVEL",
    "CI_METHOD",
    "PI_METHOD",
    "Bounds",
    "band",
    "mean_ci",
    "paired_diff",
    "prediction_band",
    "prediction_interval",
    "summarize",
]

CI_LEVEL = 0.95
CI_METHOD = "student_t"
PI_METHOD = "student_t_prediction"
"""Prediction intervals: mean +- t(1 - (1 - level)/2, n - 1) * s * sqrt(1 + 1/n)."""

Bounds = tuple[float | None, float | None]
"""Lowest and highest value a metric can take (None: unbounded)."""


def _half_width(std: np.ndarray | float, n: np.ndarray | int, level: float) -> Any:
    """t quantile times the standard error; NaN where n < 2."""
    n_arr = np.asarray(n, dtype=float)
    df = np.where(n_arr >= 2, n_arr - 1, np.nan)
    q = _st.t.ppf(0.5 + level / 2, df)
    with np.errstate(invalid="ignore", divide="ignore"):
        return q * np.asarray(std, dtype=float) / np.sqrt(n_arr)


def mean_ci(
    values: Sequence[float | None], level: float = CI_LEVEL
) -> tuple[float | None, float | None, float | None, int]:
    """Mean of the non-null values and its two-sided Student t interval.

    Returns ``(mean, low, high, n)``; ``mean`` is None when no value is usable,
    ``low``/``high`` are None when fewer than two are.
    """
    x = np.array([v for v in values if v is not None and not math.isnan(v)], dtype=float)
    n = int(x.size)
    if n == 0:
        return None, None, None, 0
    m = float(x.mean())
    if n < 2:
        return m, None, None, n
    h = float(_half_width(x.std(ddof=1), n, level))
    return m, m - h, m + h, n


def _clip(v: float | None, bounds: Bounds) -> float | None:
    if v is None:
        return None
    lo, hi = bounds
    if lo is not None:
        v = max(v, lo)
    if hi is not None:
        v = min(v, hi)
    return v


def summarize(
    values: Sequence[float | None], level: float = CI_LEVEL, bounds: Bounds = (None, None)
) -> dict[str, Any]:
    """The JSON block every scalar metric gets: per-replication values (null where
    undefined; NaN is stored as null too), mean and CI over the defined ones, and n."""
    m, lo, hi, n = mean_ci(values, level)
    lo, hi = _clip(lo, bounds), _clip(hi, bounds)
    kept = [None if v is None or math.isnan(v) else v for v in values]
    return {"values": kept, "mean": m, "ci_low": lo, "ci_high": hi, "n": n}


def band(
    rows: np.ndarray, level: float = CI_LEVEL, bounds: Bounds = (None, None)
) -> dict[str, list[float | None]]:
    """Pointwise mean and t interval of curves stacked as rows (replication x point).

    NaN entries (a bin empty in one replication) are left out point by point.
    """
    a = np.asarray(rows, dtype=float)
    ok = ~np.isnan(a)
    n = ok.sum(axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = np.where(n > 0, np.nansum(a, axis=0) / np.maximum(n, 1), np.nan)
        dev = np.where(ok, a - mean, 0.0)
        std = np.sqrt((dev**2).sum(axis=0) / np.maximum(n - 1, 1))
    h = _half_width(std, n, level)
    lo, hi = mean - h, mean + h
    if bounds[0] is not None:
        lo = np.maximum(lo, bounds[0])
    if bounds[1] is not None:
        hi = np.minimum(hi, bounds[1])
    return {"mean": _jsonable(mean), "ci_low": _jsonable(lo), "ci_high": _jsonable(hi)}


def paired_diff(
    base: Sequence[float | None], other: Sequence[float | None], level: float = CI_LEVEL
) -> dict[str, Any]:
    """Mean of ``other - base`` replication by replication, with its t interval.

    Under common random numbers both runs saw the same arrivals and buyers in
    replication r, so the per-replication difference cancels that shared noise:
    its interval is far tighter than two independent intervals side by side.
    Pairs where either value is null are dropped.
    """
    if len(base) != len(other):
        raise ValueError(f"paired values need equal lengths, got {len(base)} and {len(other)}")
    diffs: list[float | None] = [
        None if a is None or b is None else float(b) - float(a)
        for a, b in zip(base, other, strict=True)
    ]
    m, lo, hi, n = mean_ci(diffs, level)
    return {"values": diffs, "mean": m, "ci_low": lo, "ci_high": hi, "n": n}


def prediction_interval(
    values: Sequence[float | None], level: float = CI_LEVEL, bounds: Bounds = (None, None)
) -> tuple[float | None, float | None, float | None, int]:
    """Where one new replication's value should fall, from the non-null ``values`` of n
    replications: ``(mean, low, high, n)``, the two-sided Student t prediction interval

        mean +- t(1 - (1 - level) / 2, n - 1) * s * sqrt(1 + 1/n)

    (s the sample standard deviation). Source: Hahn & Meeker, *Statistical Intervals*
    (Wiley, 1991), ch. 4, the interval for one future observation from a normal
    distribution: the new value and the mean are independent, so their difference has
    variance sigma^2 (1 + 1/n). Its width stays about 2 t s as n grows, where the mean's
    confidence interval shrinks to nothing: a single replay is one draw, not a mean.
    Low and high are clipped to ``bounds``; None (as in :func:`mean_ci`) when fewer
    than two values are usable; ``mean`` None when none is.
    """
    m, lo, hi, n = mean_ci(values, level)
    if m is None or lo is None or hi is None:
        return m, None, None, n
    # mean_ci's half width is t * s / sqrt(n); times sqrt(n + 1): t * s * sqrt(1 + 1/n).
    half = (hi - m) * math.sqrt(n + 1)
    return m, _clip(m - half, bounds), _clip(m + half, bounds), n


def prediction_band(
    curve: Mapping[str, Sequence[float | None]], n: int, bounds: Bounds = (None, None)
) -> dict[str, list[float | None]]:
    """A curve's pointwise prediction band for one new replication, from its :func:`band`
    block (``mean``, ``ci_low``, ``ci_high`` per point) over ``n`` replications:
    ``{"mean", "pi_low", "pi_high"}``, the same formula as :func:`prediction_interval`
    (its half width is the CI's times sqrt(n + 1)). The block's ``ci_high`` must not
    have been clipped (a :func:`band` with no upper bound). Exact at points where all
    ``n`` replications had a value; wider than exact where only some did (their CI
    came from fewer values). No band (None) with fewer than two replications.
    """
    mean = np.array([np.nan if v is None else v for v in curve["mean"]], dtype=float)
    hi = np.array([np.nan if v is None else v for v in curve["ci_high"]], dtype=float)
    half = (hi - mean) * math.sqrt(n + 1) if n >= 2 else np.full(mean.shape, np.nan)
    lo, up = mean - half, mean + half
    if bounds[0] is not None:
        lo = np.maximum(lo, bounds[0])
    if bounds[1] is not None:
        up = np.minimum(up, bounds[1])
    return {"mean": _jsonable(mean), "pi_low": _jsonable(lo), "pi_high": _jsonable(up)}


def _jsonable(a: np.ndarray) -> list[float | None]:
    return [None if math.isnan(v) else float(v) for v in np.asarray(a, dtype=float).tolist()]
